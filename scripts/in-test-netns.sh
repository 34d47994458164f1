#!/usr/bin/env bash
# Run a command inside a network namespace made for this run, then remove the namespace.
#
#   scripts/in-test-netns.sh <command> [args...]
#
# WebRTC (libwebrtc in @livekit/rtc-node) gathers candidates on every real interface, so media
# could reach the machine's real network. Inside this namespace the only interfaces are loopback
# and a veth pair whose both ends live in the namespace, with test addresses from 198.18.0.0/15
# (the range reserved for network benchmark tests): nothing sent here can leave the namespace.
#
# Inside, WT_TEST_NODE_IP is the address the LiveKit server advertises to WebRTC clients.
set -euo pipefail

if [[ "${WT_IN_TEST_NETNS:-}" == 1 ]]; then exec "$@"; fi

if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null 2>&1; then
  echo "End-to-end tests run inside a network namespace, which needs root and iproute2 ('ip')." >&2
  echo "Run the tests as root (CI does), or install iproute2." >&2
  exit 1
fi

NS="wt-test-$$"
VETH_A="wtv$$a"
VETH_B="wtv$$b"
NODE_IP="198.18.0.1"
PEER_IP="198.18.0.2"

cleanup() { ip netns delete "$NS" 2>/dev/null || true; }
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
# Both ends of the pair are created inside the namespace, so no test address exists outside it.
ip -n "$NS" link add "$VETH_A" type veth peer name "$VETH_B"
ip -n "$NS" addr add "$NODE_IP/24" dev "$VETH_A"
ip -n "$NS" addr add "$PEER_IP/24" dev "$VETH_B"
ip -n "$NS" link set "$VETH_A" up
ip -n "$NS" link set "$VETH_B" up

set +e
ip netns exec "$NS" env WT_IN_TEST_NETNS=1 WT_TEST_NODE_IP="$NODE_IP" "$@"
status=$?
set -e
exit $status
