"""Bring the datapath up, or explain in one machine-readable word why not.

Acceleration is an optimisation: when anything on the way fails (no cgroup2,
no headers, the compiler or verifier refuses, the self-test fails) the agent
stays up, reports `degraded` with a reason, enrols nothing, and traffic flows
on kernel TCP. `--ignore-selftest` overrides a failed self-test for
operators who know better; it is logged loudly and exported as a metric.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from meshaccel_agent.datapath.datapath import Datapath
from meshaccel_agent.kernel.host import is_bpffs
from meshaccel_agent.selftest.run import INFORMATIONAL, SelfTestReport, run_selftest

log = logging.getLogger(__name__)

#: What an informational self-test failure means (README "Known kernel limitations").
KNOWN = {
    "stack_fionread": "kernel commit 929e30f93125: FIONREAD of a sockhash socket counts only redirected "
    "bytes; it under-reports while flow control sends a connection through the stack",
    "blocking_read_signal": "tcp_bpf_recvmsg() answers a blocking read woken by a signal with EAGAIN, "
    "where TCP would restart it",
}


class Reason:
    """Values of meshaccel_degraded{reason} and of the node status later."""

    NO_CGROUP2 = "NoCgroup2"
    NO_BPFFS = "NoBPFFS"
    NO_KERNEL_HEADERS = "NoKernelHeaders"
    NO_KERNEL_BTF = "NoKernelBTF"
    COMPILE_FAILED = "CompileFailed"
    LOAD_FAILED = "LoadFailed"
    PIN_FAILED = "PinFailed"
    SELF_TEST_FAILED = "SelfTestFailed"
    ATTACH_FAILED = "AttachFailed"


@dataclass
class DatapathHealth:
    attached: bool = False
    degraded_reason: str = ""
    message: str = ""
    selftest: SelfTestReport = field(default_factory=SelfTestReport)
    overridden: bool = False


def _classify_prepare_error(exc: Exception) -> str:
    text = str(exc)
    if "no kernel headers" in text:
        return Reason.NO_KERNEL_HEADERS
    if "BTF" in text:
        return Reason.NO_KERNEL_BTF
    if "Failed to compile" in text:
        return Reason.COMPILE_FAILED
    if "Failed to load" in text:
        return Reason.LOAD_FAILED
    return Reason.PIN_FAILED


def bring_up(datapath: Datapath, ignore_selftest: bool = False) -> DatapathHealth:
    health = DatapathHealth()
    bpffs = str(datapath.pins.path.parent)
    if not os.path.isfile(os.path.join(datapath.cgroup, "cgroup.controllers")):
        health.degraded_reason = Reason.NO_CGROUP2
        health.message = f"{datapath.cgroup} is not a cgroup2 directory and holds no cgroup2 mount"
    elif not is_bpffs(bpffs):
        health.degraded_reason = Reason.NO_BPFFS
        health.message = f"{bpffs} is not a bpf filesystem: mount one on the node (mount -t bpf bpf {bpffs})"
    if not health.degraded_reason:
        try:
            datapath.prepare()
        except Exception as exc:  # every failure here means "run natively"
            health.degraded_reason = _classify_prepare_error(exc)
            health.message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    if not health.degraded_reason:
        health.selftest = report = run_selftest(datapath.current(), datapath.cgroup, datapath.flow_bound)
        for check in INFORMATIONAL:
            if not report.passed.get(check, True):
                log.warning("kernel self-test %s: %s (%s)", check, report.details.get(check), KNOWN[check])
        if report.ok:
            log.info("kernel self-test passed: %s", ", ".join(f"{k}: {v}" for k, v in report.details.items()))
        elif ignore_selftest:
            health.overridden = True
            log.error(
                "KERNEL SELF-TEST FAILED (%s) and --ignore-selftest is set: ACCELERATING ANYWAY. "
                "Traffic may stall or break on this kernel.",
                "; ".join(f"{c}: {report.details.get(c)}" for c in report.failed()),
            )
        else:
            health.degraded_reason = Reason.SELF_TEST_FAILED
            health.message = "; ".join(f"{c}: {report.details.get(c)}" for c in report.failed())
            try:
                datapath.detach()  # a restart may find it attached
            except (OSError, RuntimeError) as exc:
                log.warning("could not detach the datapath: %s", exc)
    if not health.degraded_reason:
        try:
            datapath.attach()
            health.attached = True
        except Exception as exc:
            health.degraded_reason = Reason.ATTACH_FAILED
            health.message = str(exc)
    if health.degraded_reason:
        log.error(
            "degraded (%s): %s; enrolling nothing, traffic stays on kernel TCP",
            health.degraded_reason,
            health.message,
        )
    return health
