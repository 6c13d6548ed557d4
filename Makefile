# tapsense: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install build demo test lint bench fuzz clean

install:
	$(PIP) install -q -e '.[test]'

build:
	$(PYTHON) setup.py -q build_ext --inplace

demo: install
	@mkdir -p build/demo
	$(PYTHON) -m bench.gen_mix --packets 20000 --seed 7 --out build/demo/sample.pcap
	tapsense replay build/demo/sample.pcap --events build/demo/records.jsonl
	@echo "--- a few records (all of them in build/demo/records.jsonl) ---"
	@grep -m 3 '"type":"dns"' build/demo/records.jsonl
	@grep -m 3 '"type":"flow"' build/demo/records.jsonl
	@tail -n 1 build/demo/records.jsonl

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
