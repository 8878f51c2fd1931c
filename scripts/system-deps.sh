#!/usr/bin/env bash
# Debian packages the test suite drives for real: Prometheus + promtool (dashboard queries and alert rules),
# Alertmanager (an alert firing end to end), Redis (the shared budget store) and valgrind (the instruction-count
# benchmark, benchmarks/bench_instructions.py, which tests/test_benchmark_instructions.py runs) and Chromium
# (tests/test_report_html.py opens the report page headless).
set -euo pipefail
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v redis-server >/dev/null || need+=(redis-server)
command -v valgrind >/dev/null || need+=(valgrind)
command -v chromium >/dev/null || need+=(chromium)  # headless: the `llmmeter report --html` page test
if ((${#need[@]} == 0)); then exit 0; fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends: the Prometheus package otherwise pulls in node-exporter and friends.
$sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
