// Where the API lives. Empty: this page's own origin (the default when Switchboard serves
// this folder at `/`). To serve this folder from another origin, set the API's URL here (or
// open the page with `?api=https://api.example.com`) and list this page's origin in the
// API's CORS_ALLOWED_ORIGINS.
window.SWITCHBOARD_CONFIG = {
  apiBase: "",
};
