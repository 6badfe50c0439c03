# The two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself.
PY := .venv/bin/python
.PHONY: demo test test-python lint-proto stubs bootstrap bench

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(PY) examples/demo.py

test: bootstrap lint-proto test-python

test-python:
	$(PY) -m pytest -q

lint-proto: bootstrap
	.venv/bin/buf lint

stubs: bootstrap
	$(PY) scripts/gen_proto.py

bench: bootstrap
	$(PY) benchmarks/bench_overhead.py
