#!/usr/bin/env bash
# Installs what building, running and testing Postern needs on Debian, and only what is
# missing. Usage: scripts/install-deps.sh run|test|fuzz
set -euo pipefail
mode="${1:-test}"

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

have cc || need_pkgs+=(build-essential)
have pkg-config || need_pkgs+=(pkg-config)
# samael (SAML) links libxmlsec1 and generates its bindings with libclang.
pkg-config --exists xmlsec1 2>/dev/null || need_pkgs+=(libxmlsec1-dev)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
if [ "$mode" = test ]; then
  have swaks || need_pkgs+=(swaks)
  # swaks --tls needs Perl's Net::SSLeay (a Recommends of swaks, skipped by --no-install-recommends).
  perl -MNet::SSLeay -e 1 2>/dev/null || need_pkgs+=(libnet-ssleay-perl)
  # smtp-source / smtp-sink (benchmarks) come with Postfix.
  have smtp-source || need_pkgs+=(postfix)
  have python3 || need_pkgs+=(python3)
  have openssl || need_pkgs+=(openssl)
  python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
  # Dovecot is the IMAP server of the import tests; they run it themselves (no service).
  have dovecot || need_pkgs+=(dovecot-imapd)
  # The SAML identity provider of the tests (pysaml2) signs with the xmlsec1 program.
  have xmlsec1 || need_pkgs+=(xmlsec1)
  # The sqlite3 shell is the peer of the rules benchmark (bench/rules.sh).
  have sqlite3 || need_pkgs+=(sqlite3)
fi

if [ "$mode" = fuzz ]; then
  # libfuzzer-sys compiles libFuzzer (C++); fuzz/seed.py is Python; fuzz/run.sh measures
  # CPU time with GNU time.
  have c++ || need_pkgs+=(g++)
  have python3 || need_pkgs+=(python3)
  [ -x /usr/bin/time ] || need_pkgs+=(time)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Postfix is only needed for its tools: no mail system configuration, no daemon set-up.
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections 2>/dev/null || true
  # Packages with daemons (Dovecot, Postfix) must not start a system service: policy-rc.d
  # (exit 101) tells Debian's maintainer scripts not to, for the time of the install.
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    added_policy=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
  [ -z "$added_policy" ] || $sudo rm -f "$policy"
fi

# Python peers of the tests (dkimpy signs and ARC-seals independently of Postern, and checks
# our outbound signatures, Ed25519 ones with pynacl; pysaml2 is
# the SAML identity provider), in a venv under the build folder so nothing is installed
# system-wide.
if [ "$mode" = test ]; then
  venv="$(dirname "$0")/../build/venv"
  # openapi-spec-validator checks the API's OpenAPI document independently of utoipa.
  if ! "$venv/bin/python" -c 'import dkim, dns, nacl, authres, openapi_spec_validator, saml2' 2>/dev/null; then
    echo "setting up $venv (dkimpy, dnspython, pynacl, authres, openapi-spec-validator, pysaml2)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check dkimpy dnspython pynacl authres openapi-spec-validator pysaml2
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (https://rustup.rs) and run this again" >&2
  exit 1
fi
