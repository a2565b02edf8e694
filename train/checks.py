"""The plain-script check runner of train/test_*.py (no pytest here): register with @checks.test, run
with checks.run_all(), which prints PASS/FAIL per check and ends with the line "N passed, N failed"."""
import traceback


class Checks:
    def __init__(self):
        self.fns = []

    def test(self, fn):
        self.fns.append(fn)
        return fn

    def run_all(self) -> int:
        passed = failed = 0
        for fn in self.fns:
            try:
                fn()
                passed += 1
                print(f'PASS {fn.__name__}')
            except Exception:  # noqa: BLE001
                failed += 1
                print(f'FAIL {fn.__name__}')
                traceback.print_exc()
        print(f'{passed} passed, {failed} failed')
        return failed
