# The README's commands. Each installs what it needs (Debian packages), configures, builds and runs.
#   make demo   serial vs parallel timing, then mpp vs Python's multiprocessing (short run)
#   make test   every test (ctest)
#   make asan   every test under AddressSanitizer + UBSan;  make tsan: ThreadSanitizer
#   make bench  the full benchmark comparison with Python
JOBS ?= $(shell nproc)
PRESET ?= default

.PHONY: deps demo test asan tsan bench clean

deps:
	@./.ci/install-deps

demo: deps
	cmake --preset default
	cmake --build --preset default -j $(JOBS) --target serial_vs_parallel mpp_bench
	./build/default/examples/serial_vs_parallel
	python3 benchmarks/compare.py --quick --build-dir build/default

test: deps
	cmake --preset $(PRESET)
	cmake --build --preset $(PRESET) -j $(JOBS)
	ctest --preset $(PRESET) -j $(JOBS)

asan:
	$(MAKE) test PRESET=asan

tsan:
	$(MAKE) test PRESET=tsan

bench: deps
	cmake --preset default
	cmake --build --preset default -j $(JOBS) --target mpp_bench
	python3 benchmarks/compare.py --build-dir build/default

clean:
	rm -rf build
