# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast conformance lint bench browser webkit axe coturn redis netbed clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m streamer broadcast media/sample.mp4 --loop

# Browser tests need Debian's chromium and firefox-esr (and the JS tests node); install them when
# missing and apt is usable (root).
browser:
	@if ! command -v node >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian nodejs for the JavaScript tests..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian chromium for the browser tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing and apt is not usable: browser tests will be skipped"; \
	  fi; \
	fi
	@# With its recommended packages: Debian's ffmpeg libraries give Firefox H.264 for MSE.
	@if [ ! -x /usr/bin/firefox-esr ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian firefox-esr for the Firefox browser tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq firefox-esr >/dev/null; \
	  else \
	    echo "firefox-esr is missing and apt is not usable: Firefox browser tests will be skipped"; \
	  fi; \
	fi

# The WebKit player test (tests/test_browser_webkit.py) drives Debian's WebKitGTK MiniBrowser
# through WebKitWebDriver on a private Xvfb; gstreamer1.0-libav decodes H.264 for its MSE. WebKitGTK
# rather than WPE: Debian 12's WPE is frozen at 2.38 while webkit2gtk follows WebKit's stable releases.
WEBKIT_DEBS := webkit2gtk-driver gstreamer1.0-libav xvfb
webkit:
	@if ! dpkg -s $(WEBKIT_DEBS) >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian $(WEBKIT_DEBS) for the WebKit player test..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(WEBKIT_DEBS) >/dev/null; \
	  else \
	    echo "$(WEBKIT_DEBS) missing and apt is not usable: the WebKit player test will be skipped"; \
	  fi; \
	fi

# The accessibility check in the browser tests runs axe-core (npm, a pinned version) in the pages;
# it lands in the venv, as the Python packages do.
AXE_VERSION := 4.14.1
AXE_JS := $(VENV)/vendor/axe-core-$(AXE_VERSION).min.js
axe: $(AXE_JS)
$(AXE_JS): | $(PY)
	@if command -v npm >/dev/null 2>&1; then \
	  rm -rf $(VENV)/vendor/npm && mkdir -p $(VENV)/vendor/npm && \
	  { npm install --silent --no-save --no-audit --no-fund --prefix $(VENV)/vendor/npm axe-core@$(AXE_VERSION) && \
	    cp $(VENV)/vendor/npm/node_modules/axe-core/axe.min.js $@; } || \
	  echo "npm could not fetch axe-core $(AXE_VERSION): the accessibility check will be skipped"; \
	else \
	  echo "npm is missing: the accessibility check will be skipped"; \
	fi

# The TURN tests start Debian's coturn (`turnserver`) on 127.0.0.1; install it when missing and apt
# is usable (root). The package's own service stays off (Debian ships it disabled).
coturn:
	@if ! command -v turnserver >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian coturn for the TURN tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn >/dev/null; \
	  else \
	    echo "turnserver is missing and apt is not usable: TURN tests will be skipped"; \
	  fi; \
	fi

# The cluster tests start Debian's redis-server on 127.0.0.1 (no persistence); install it when
# missing and apt is usable (root). The package's own service is stopped: the tests start their own.
redis:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian redis-server for the cluster tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	    (systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null) || true; \
	  else \
	    echo "redis-server is missing and apt is not usable: cluster tests will be skipped"; \
	  fi; \
	fi

# The namespace test bed (`streamer netbed`, its test needs root): coturn for STUN/TURN, nftables
# for the NATs, iptables for NFQUEUE, and the delay shim's NetfilterQueue (built against Debian's
# libnetfilter-queue-dev) for kernels without sch_netem. Installed when missing and apt is usable.
NETBED_DEBS := coturn nftables iptables libnetfilter-queue-dev iproute2 util-linux gcc
netbed: $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  ! dpkg -s $(NETBED_DEBS) >/dev/null 2>&1; then \
	  echo "installing Debian packages for the network test bed..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(NETBED_DEBS) >/dev/null; \
	fi
	@if ! $(PY) -c 'import netfilterqueue' 2>/dev/null; then \
	  if [ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ]; then \
	    $(PY) -m pip install --quiet -e '.[test,bench,netbed]'; \
	  else \
	    echo "libnetfilter-queue-dev is missing: the network test bed will be skipped"; \
	  fi; \
	fi

# The whole suite (slow end-to-end and browser tests included), then lint: CI runs exactly this.
test: $(STAMP) browser webkit axe coturn redis netbed
	$(PY) -m pytest -q -rsfE --durations=10
	$(MAKE) --no-print-directory lint

# Everything but the slow end-to-end tests.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# One behavioural truth for the two swarm cores: recorded simulator traces replayed into the
# Python and the JS core (same bytes, events, timers), and the shared hand-written scenarios.
# `make test` runs these too (tests/test_conformance.py; node's through tests/test_js.py).
conformance: $(STAMP)
	$(PY) -m pytest -q tests/test_conformance.py
	node --test tests/js/conformance.test.mjs

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
