"""Settings profiles: `local` (one machine, safe defaults), `production` and `test`."""
