"""Read by gunicorn from the working directory (/app).

Every log line goes to stdout; nothing is written to the image's file system,
so the web container also runs with a read-only root file system.
"""

import logs

accesslog = "-"
logconfig_dict = {
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}},
    "formatters": {"plain": {"()": logs.RedactingFormatter, "format": logs.FORMAT}},
}
# The worker heartbeat files: tmpfs, not /tmp.
worker_tmp_dir = "/dev/shm"
# gunicorn >= 25.1 opens a control socket under $HOME by default; uid 10001 has no home.
control_socket_disable = True
