#!/usr/bin/env bash
# Runs a firmware image on QEMU's mps2-an385 (Cortex-M3). Semihosting carries its output and
# exit status; `timeout` turns a hang into a failure.
#
# FIRMWARE_HOST_PORT=P: the LAN9118 gets QEMU user networking, isolated (restrict=on), whose
# only way out is 10.0.2.100:5555 forwarded to 127.0.0.1:P (a server must listen there first:
# QEMU connects when it starts).
# FIRMWARE_TAP=tap0: the LAN9118 on that TAP device instead (it must exist where QEMU runs:
# inside the network namespace the test made).
set -euo pipefail
net=(-nic none)
if [[ -n "${FIRMWARE_TAP:-}" ]]; then
    net=(-nic "tap,ifname=${FIRMWARE_TAP},script=no,downscript=no,model=lan9118")
elif [[ -n "${FIRMWARE_HOST_PORT:-}" ]]; then
    net=(-nic "user,model=lan9118,restrict=on,guestfwd=tcp:10.0.2.100:5555-tcp:127.0.0.1:${FIRMWARE_HOST_PORT}")
fi
exec timeout "${FIRMWARE_TIMEOUT:-120}" qemu-system-arm -cpu cortex-m3 -machine mps2-an385 \
    -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native "${net[@]}" -kernel "$1"
