#!/usr/bin/env bash
# Installs dreamsr as a systemd service (run as root). This is the documented install; the systemd unit test
# (scripts/test-systemd-unit.sh) and the release check (scripts/test-release-chroot.sh) run exactly this script.
#   /usr/local/bin/dreamsr                   the release binary (scripts/build-release.sh) or --binary PATH
#   /etc/dreamsr/dreamsr.yaml                conf/dreamsr.yaml (kept if present: it is the operator's file)
#   /etc/dreamsr/pipelines/*.yaml            pipelines/
#   /var/lib/dreamsr/models/                 Real-ESRGAN x4plus (scripts/fetch-models.sh) or --models DIR
#   /var/lib/dreamsr/{watch,output}          the default watch folder and its outputs, group dreamsr (setgid)
#   /etc/systemd/system/dreamsr.service      systemd/dreamsr.service
# A system user and group `dreamsr` own the state; add operators to the group to drop files and read outputs.
# Usage: scripts/install-service.sh [--binary PATH] [--models DIR] [--no-start]
set -euo pipefail
cd "$(dirname "$0")/.."
binary="" models="" start=1
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --models) models="$2"; shift 2 ;;
        --no-start) start=0; shift ;;
        *) echo "install-service: unknown argument '$1' (usage: --binary PATH --models DIR --no-start)" >&2; exit 64 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "install-service: run as root" >&2; exit 1; }
if [ -z "$binary" ]; then binary="$(bash scripts/build-release.sh | tail -n1)"; fi
[ -x "$binary" ] || { echo "install-service: $binary is not an executable" >&2; exit 1; }

getent group dreamsr >/dev/null || groupadd --system dreamsr
getent passwd dreamsr >/dev/null || useradd --system --gid dreamsr --home-dir /var/lib/dreamsr --no-create-home \
    --shell /usr/sbin/nologin --comment "dreamsr daemon" dreamsr

install -D -m 0755 "$binary" /usr/local/bin/dreamsr
install -d -m 0755 /etc/dreamsr /etc/dreamsr/pipelines
install -m 0644 pipelines/*.yaml /etc/dreamsr/pipelines/
[ -f /etc/dreamsr/dreamsr.yaml ] || install -m 0644 conf/dreamsr.yaml /etc/dreamsr/dreamsr.yaml
install -d -m 0755 /var/lib/dreamsr /var/lib/dreamsr/models
if [ -n "$models" ]; then
    cp -r "$models"/. /var/lib/dreamsr/models/
else
    bash scripts/fetch-models.sh /var/lib/dreamsr/models
fi
chmod -R a+rX /var/lib/dreamsr/models
# The unit's StateDirectory= makes these too (owner dreamsr, mode 2770); made here so they exist before the first start.
install -d -o dreamsr -g dreamsr -m 2770 /var/lib/dreamsr/watch /var/lib/dreamsr/output
install -D -m 0644 systemd/dreamsr.service /etc/systemd/system/dreamsr.service

if [ $start -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now dreamsr
    echo "install-service: started; systemctl status dreamsr / journalctl -u dreamsr"
else
    echo "install-service: installed (not started: --no-start or no running systemd)"
fi
