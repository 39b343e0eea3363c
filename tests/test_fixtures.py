"""The test harness itself: the netns fixture removes its namespace on every path,
without CAP_NET_ADMIN netns tests are skipped with a reason that says exactly that, and
a KernelServer stops its accept thread before it closes the socket that thread polls."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
INI = "[pytest]\nmarkers =\n    netns: needs root\n"


@pytest.mark.netns
def test_netns_fixture_removes_its_namespace_after_pass_and_failure(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import pathlib, pytest

        def _note(name):
            with pathlib.Path("names.txt").open("a") as f:
                f.write(name + "\\n")

        @pytest.mark.netns
        def test_passes(netns):
            _note(netns.name)

        @pytest.mark.netns
        def test_fails(netns):
            _note(netns.name)
            raise AssertionError("on purpose")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    names = (pytester.path / "names.txt").read_text().split()
    assert len(names) == 2 and all(n.startswith("pytcp-test-") for n in names)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [n for n in names if n in listed] == []


def test_without_cap_net_admin_netns_tests_skip_with_that_reason(
    pytester: pytest.Pytester,
) -> None:
    # The same conftest, on a machine that lacks the capability.
    pytester.makeconftest(
        CONFTEST.read_text() + "\n\ndef _has_cap_net_admin():\n    return False\n"
    )
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.netns
        def test_needs_root(netns):
            raise AssertionError("must not run")

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] *: needs CAP_NET_ADMIN (run as root) to create network namespaces "
            "and TUN devices"
        ]
    )


@pytest.mark.netns
def test_kernel_server_close_ends_its_accept_thread_before_closing(netns) -> None:
    # close() must not leave the accept thread polling the number it closes: the next
    # pipe2() would reuse that number and a restarted poll would pin the pipe (see close).
    from tests.cli.netcat import KernelServer, recv_all

    server = KernelServer(7999, recv_all)
    server.close()
    assert not server.accepting.is_alive()
    assert server.sock.fileno() == -1
