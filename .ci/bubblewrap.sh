#!/usr/bin/env bash
# Sourced by .ci/run: bubblewrap, the sandbox self-modification runs candidates in (tests/test_sandbox.py).
# Without it those tests fail with the install hint: a candidate never runs unsandboxed.
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
    || echo "WARNING: could not install bubblewrap; the sandbox tests will fail" >&2
fi
