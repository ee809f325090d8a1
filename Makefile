# Parlor's two commands: `make up` runs the system on this machine, `make test` runs
# every check. Both build the virtualenv and install what they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
REQUIREMENTS := requirements.txt functions/requirements.txt media_node/requirements.txt
# The media node's send path is a C extension (media_node/transport/native), built in place: it
# needs a compiler, the interpreter's headers (python3-dev for Debian's own python3) and
# OpenSSL 3's and zlib's (AES-GCM, HMAC-SHA1, CRC-32), and runs on the libsrtp that
# pylibsrtp's wheel brings.
FANOUT := media_node/transport/_fanout.abi3.so
FANOUT_SOURCES := $(wildcard media_node/transport/native/*.c media_node/transport/native/*.h)
NATIVE_DEBIAN_PACKAGES := gcc libc6-dev python3-dev libssl-dev zlib1g-dev
NATIVE_DEBIAN_STAMP := $(VENV)/.native-debian-stamp
# Debian packages the browser tests need: Chromium (driven by Playwright, which may not
# download browsers here) and a colour emoji font for the reactions; and coturn, the TURN
# server `make up` runs (the tests hear a Space through it, relay-only).
DEBIAN_PACKAGES := chromium fonts-noto-color-emoji coturn
# Named for the list, so that a package added to it is installed on machines that had
# the earlier list.
DEBIAN_STAMP := $(VENV)/.debian-stamp-$(shell echo $(DEBIAN_PACKAGES) | tr ' ' '-')
# Debian packages the media benchmark needs: Janus, whose AudioBridge it also measures,
# and perf, for the profile of a listener packet.
BENCH_DEBIAN_PACKAGES := janus linux-perf
BENCH_DEBIAN_STAMP := $(VENV)/.bench-debian-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export AWS_DEFAULT_REGION ?= us-east-1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: up test lint typecheck pytest synth token admin rotate-keys clean bench

$(STAMP): $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'pip>=24,<26.3'  # chalice 1.34 packages with pip and pins it
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

$(DEBIAN_STAMP): | $(STAMP)
	dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES); }
	touch $(DEBIAN_STAMP)

$(BENCH_DEBIAN_STAMP): | $(STAMP)
	dpkg -s $(BENCH_DEBIAN_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_DEBIAN_PACKAGES); }
	touch $(BENCH_DEBIAN_STAMP)

up: $(STAMP) node_modules/.package-lock.json
	$(BIN)/python -m local.up

# Checked again when the Makefile changes: a machine that installed an earlier list gets
# what was added to it.
$(NATIVE_DEBIAN_STAMP): Makefile | $(STAMP)
	dpkg -s $(NATIVE_DEBIAN_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(NATIVE_DEBIAN_PACKAGES); }
	touch $(NATIVE_DEBIAN_STAMP)

$(FANOUT): $(FANOUT_SOURCES) media_node/transport/native/build.sh | $(STAMP) $(NATIVE_DEBIAN_STAMP)
	sh media_node/transport/native/build.sh $(BIN)/python $(FANOUT)

# Everything that starts a media node needs the extension.
up pytest bench: $(FANOUT)

# Mint a bearer token for a local user: make token USER=u-alice (ADMIN=1: in the
# admin group, as `make admin` makes someone in AWS).
token: $(STAMP)
	@$(BIN)/python -m local.mint $(USER) $(if $(ADMIN),--admin)

# Make a user of the deployed stack an administrator (the Cognito group `admin`):
# make admin USER=<email or username> [STACK=Parlor]
admin: $(STAMP)
	$(BIN)/python -m ops.admin '$(USER)' --stack '$(or $(STACK),Parlor)'

# A new join-token key, the current one kept as the previous: in .local/ and, while
# `make up` runs, in its embedded Secrets Manager, where the API and the node read it.
rotate-keys: $(STAMP)
	$(BIN)/python -m local.rotate

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy app.py

# node_modules: the browser tests load hls.js from it, the infra tests publish it.
pytest: $(STAMP) $(DEBIAN_STAMP) node_modules/.package-lock.json
	$(BIN)/pytest

# What package.json pins: the CDK command line (`npx cdk synth` as a deployer runs it)
# and hls.js, which the site serves to browsers at /vendor/ (no build step).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

synth: $(STAMP) node_modules/.package-lock.json
	npx cdk synth --quiet

test: lint typecheck pytest synth

# One Space start fanned out to 100,000 followers through the alert pipeline against
# moto in server mode; results in bench/results/alerts.json (FOLLOWERS=... to change).
# Then the media node (docs/performance.md): every path side by side, the SRTP step alone
# (libsrtp against the stream's own AES-GCM on OpenSSL, one process),
# sends batched or not, a relayed room against the same room on one worker, HLS (a
# node's CPU per room with it on and off, its delay to the origin and a player), a perf
# profile of a listener packet on both paths (root), and a saturation run of a
# node held to 30% of its core, where the cgroup v1 CPU controller is writable (root):
# on 2 CPUs the load generator cannot load a whole core's worth of listeners.
bench: $(STAMP) $(BENCH_DEBIAN_STAMP)
	$(BIN)/pip install --quiet -r bench/media/requirements.txt
	$(BIN)/python -m bench.alerts
	$(BIN)/python -m bench.recovery
	$(BIN)/python -m bench.media
	$(BIN)/python -m bench.media.protect
	$(BIN)/python -m bench.media.sends
	$(BIN)/python -m bench.media.relay
	$(BIN)/python -m bench.hls
	if [ "$$(id -u)" = 0 ]; then $(BIN)/python -m bench.media.profile; \
	else echo "not root: perf cannot record the node's CPU, the profile of a listener packet is skipped"; fi
	if [ -w /sys/fs/cgroup/cpu ]; then \
	  $(BIN)/python -m bench.media --saturation-only 0.3 --storm 500 --step 100 --limit 2500; \
	else echo "no writable cgroup v1 CPU controller: the held-node saturation run is skipped"; fi

clean:
	rm -rf $(VENV) .local cdk.out chalice.out node_modules .pytest_cache .mypy_cache .ruff_cache
	rm -f $(FANOUT)
