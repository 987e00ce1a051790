"""A private RabbitMQ node for tests and benchmarks: its own ports, files and node name.

The machine's RabbitMQ (5672) is shared, so a test that restarts RabbitMQ, or a benchmark
that measures its CPU, runs a node of its own: Debian's `rabbitmq-server`, started as the
current user with every path, the AMQP port and the Erlang distribution port set apart, and
no plugins. It registers with the machine's epmd under its own name.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from config.redis_server import free_port, stop_process_group

# Debian's wrapper in /usr/sbin switches to the `rabbitmq` user; this script runs the node as
# whoever starts it, with the files we give it.
SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def rabbitmq_server_script() -> Path | None:
    """The `rabbitmq-server` start script, or None when RabbitMQ is not installed."""
    if SERVER_SCRIPT.exists():
        return SERVER_SCRIPT
    found = shutil.which("rabbitmq-server")
    return Path(found) if found else None


@dataclass
class PrivateRabbitMQ:
    """A RabbitMQ node on 127.0.0.1 with its files under `directory`; `stop` then `start`
    restarts it on the same port, empty of everything not durable (a real restart)."""

    directory: Path
    port: int = 0
    dist_port: int = 0
    name: str = field(default_factory=lambda: f"switchboard-{uuid.uuid4().hex[:8]}")
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "log" / f"{self.name}@localhost.log"

    def environment(self) -> dict[str, str]:
        """The start script's environment: everything of this node's apart from the machine's."""
        env = dict(os.environ)
        env.update(
            {
                "HOME": str(self.directory),  # the Erlang cookie is written there
                "RABBITMQ_NODENAME": f"{self.name}@localhost",
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
                "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.directory / "log"),
                "RABBITMQ_PID_FILE": str(self.directory / "rabbitmq.pid"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
            }
        )
        return env

    def start(self, timeout: float = 60.0, cores: set[int] | None = None) -> PrivateRabbitMQ:
        """Start the node (on `cores`, if given) and wait until it takes AMQP connections."""
        script = rabbitmq_server_script()
        if script is None:
            raise RuntimeError("rabbitmq-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.dist_port = self.dist_port or free_port()
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
        )
        # Erlang's distribution listens on loopback only, as the machine's node does.
        (self.directory / "rabbitmq-env.conf").write_text(
            "export ERL_FLAGS=\"-kernel inet_dist_use_interface '{127,0,0,1}'\"\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        log = (self.directory / "server.out").open("ab")

        def on_cores() -> None:
            if cores is not None:
                os.sched_setaffinity(0, cores)

        self.process = subprocess.Popen(  # noqa: S603 - fixed argument list
            [str(script)],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=on_cores,
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        from realtime.kernel.rabbitmq_layer import probe

        def answers() -> bool:
            try:
                asyncio.run(probe(self.url, within=2.0))
            except Exception:
                return False
            return True

        deadline = time.monotonic() + timeout
        # A thread of its own: the caller may be running an event loop (the benchmarks are).
        with ThreadPoolExecutor(1) as thread:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"rabbitmq-server exited, see {self.directory}")
                if thread.submit(answers).result():
                    return
                time.sleep(0.3)
        raise TimeoutError(
            f"rabbitmq-server did not answer on port {self.port}, see {self.directory}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node as a service manager would (SIGTERM: it closes its connections)."""
        if self.process is not None:
            stop_process_group(self.process, timeout)
