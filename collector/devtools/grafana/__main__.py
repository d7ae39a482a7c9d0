"""``python -m collector.devtools.grafana [OUT_DIR] [--margin-alert-rate R]``."""

from collector.devtools.grafana import main

main()
