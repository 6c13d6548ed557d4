# tapsense: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install build demo test lint bench fuzz clean

install:
	$(PIP) install -q -e '.[test]'

build:
	$(PYTHON) setup.py -q build_ext --inplace

demo: install
	@rm -rf build/demo && mkdir -p build/demo
	$(PYTHON) -m tests.scenario --out build/demo
	@set -e; \
	$(PYTHON) -m agent collect --config config/demo.toml 2> build/demo/collector.log & \
	collector=$$!; trap 'kill $$collector 2>/dev/null; wait $$collector 2>/dev/null' EXIT; \
	for i in $$(seq 100); do grep -q collect.started build/demo/collector.log && break; kill -0 $$collector 2>/dev/null || break; sleep 0.1; done; \
	if ! grep -q collect.started build/demo/collector.log; then \
		echo "demo: the collector did not start (is 127.0.0.1:7443 taken?):" >&2; \
		tail -n 3 build/demo/collector.log >&2; exit 1; fi; \
	echo "+ tapsense replay build/demo/scenario.pcap --config config/demo.toml --events build/demo/records.jsonl"; \
	tapsense replay build/demo/scenario.pcap --config config/demo.toml --events build/demo/records.jsonl \
		2> build/demo/replay.log; \
	tail -n 2 build/demo/replay.log; \
	echo "+ tapsense report --config config/demo.toml"; \
	tapsense report --config config/demo.toml; \
	tapsense report --config config/demo.toml --html build/demo/report.html; \
	echo "--- the same as one page with charts: build/demo/report.html; records: build/demo/records.jsonl"

test: install
	$(PYTHON) -m pytest -q

lint:
	ruff check agent tests bench
	ruff format --check agent tests bench
	cython-lint ext/
	mypy agent

bench: install
	$(PYTHON) -m bench.run

clean:
	rm -rf build *.egg-info agent/*.so ext/*.c
