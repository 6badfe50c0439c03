# The two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself.
PY := .venv/bin/python
.PHONY: demo test test-python test-vscode lint-proto stubs bootstrap bench

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(PY) examples/demo.py

# test-vscode installs what the extension's tests need (npm packages, Node 24, code-server, Debian
# chromium) on first use; it caches code-server outside the tree (~/.cache/onthefly-vscode).
test: bootstrap lint-proto test-python test-vscode

test-python:
	$(PY) -m pytest -q

test-vscode: bootstrap
	$(MAKE) -C vscode-client test

lint-proto: bootstrap
	.venv/bin/buf lint

stubs: bootstrap
	$(PY) scripts/gen_proto.py

bench: bootstrap
	$(PY) benchmarks/bench_overhead.py
