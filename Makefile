PYTHON ?= .venv/bin/python

.PHONY: proto test

# Generated stubs land in src/corral/api and are never edited by hand.
# proto/ holds our files by proto package (proto/containerd/services/...). protoc writes
# top-level imports (`from containerd.types import ...`); the sed step puts them under the
# corral.api package so the stubs import as `corral.api.containerd...`.
proto:
	@if [ -n "$$(find proto -name '*.proto' 2>/dev/null)" ]; then \
		find proto -name '*.proto' | sort | xargs $(PYTHON) -m grpc_tools.protoc -Iproto \
			--python_out=src/corral/api --grpc_python_out=src/corral/api && \
		find src/corral/api -name '*_pb2*.py' | xargs sed -i -E \
			's/^(from|import) (containerd|corral|google\.rpc)([. ])/\1 corral.api.\2\3/' && \
		find src/corral/api -type d -exec sh -c 'test -e "$$1/__init__.py" || touch "$$1/__init__.py"' _ {} \; ; \
	fi

test:
	bash scripts/test.sh
