"""Writes onto block devices by any tool (PB404, PB405): dd, mkfs, wipefs, cp, truncate, redirections."""
from __future__ import annotations

import re

from services.playbook.shell.model import Call, Report, Word, leading_hole, literal, options

_SAFE_DEVICES = re.compile(r"/dev/(null|zero|full|u?random|std(in|out|err)|tty\d*|console|kmsg|log|(fd|pts)/\d+"
                           r"|shm/.*)")
_MKFS = re.compile(r"mkfs(\..+)?|mke2fs|mkswap|mkdosfs|mkntfs|mkfs_\w+")
_PARTITIONERS = {"fdisk": {"l", "list", "s", "getsz"}, "sfdisk": {"l", "list", "d", "dump", "J", "json", "s", "V",
                 "verify", "g", "show-size", "show-geometry"}, "gdisk": {"l"}, "cfdisk": set(),
                 "sgdisk": {"p", "print", "i", "info", "v", "verify", "P", "pretend"}}
_PARTED_WRITES = {"mklabel", "mktable", "mkpart", "mkpartfs", "rm", "resize", "resizepart", "rescue", "move", "cp",
                  "set", "toggle", "name", "disk_set"}
_COPIERS = {"cp", "mv", "install", "ddrescue", "dcfldd", "pv", "rsync", "cat", "ln"}  # the last operand is written
_ERASERS = {"blkdiscard", "truncate", "badblocks", "hdparm", "nvme", "cryptsetup", "mdadm", "zpool", "pvremove",
            "vgremove", "flashrom", "sg_format"}
_ERASE_FLAGS = {"hdparm": {"security-erase", "security-erase-enhanced", "trim-sector-ranges", "write-sector",
                           "make-bad-sector", "fibmap"},
                "badblocks": {"w"}, "mdadm": {"zero-superblock"}}
_ERASE_WORDS = {"nvme": {"format", "sanitize", "write-zeroes"}, "cryptsetup": {"luksFormat", "erase", "luksErase"},
                "zpool": {"labelclear", "create", "destroy"}}
PROGRAMS = frozenset({"dd", "dcfldd", "mkfs", "mke2fs", "mkswap", "mkdosfs", "mkntfs", "wipefs", "shred", "parted",
                      "tee"} | set(_PARTITIONERS) | _ERASERS)  # with /dev/ in the text, every copier too
_TRUNCATE_VALUES = frozenset({"-s", "--size", "-r", "--reference"})
_WHY = "overwrites a disk or partition, destroying its data and filesystem"


def device(word: Word) -> bool:
    path = word.value
    return path.startswith("/dev/") and not _SAFE_DEVICES.fullmatch(path) and not path.startswith("/dev/null")


def redirects(call: Call, report: Report) -> None:
    for redirect in call.redirects:
        target = redirect.target
        if redirect.op not in ("<", "<<", "<<-", "<<<", "<&") and target is not None and device(target):
            report.add("PB405", call.code.place(redirect.start),
                       f"'{redirect.op} {call.code.show(target)}' writes straight onto a device, destroying the "
                       "disk's data and filesystem; write to a file instead")


def disks(call: Call, report: Report) -> None:
    program = call.name
    if program not in PROGRAMS and program not in _COPIERS and not _MKFS.fullmatch(program):
        return
    opts = options(call.args)
    devices = [w for w in opts.operands if device(w)]
    unseen = any(leading_hole(w) is not None for w in opts.operands)
    flags = opts.short | opts.long
    why = f"'{call.shown()}' {_WHY}; "
    if program in ("dd", "dcfldd") and any(_of(w) for w in call.args):
        report.add("PB404", call.at, why + "write to an image file, or do this by hand, not from a playbook")
    elif (_MKFS.fullmatch(program) or (program == "wipefs" and {"a", "all", "o", "offset"} & flags)) and (
            devices or unseen):
        report.add("PB404", call.at, why + "format disks by hand or with a provisioning tool, not from a playbook")
    elif program in _PARTITIONERS and devices and not flags & _PARTITIONERS[program]:
        report.add("PB404", call.at, why + "use the read-only form (e.g. -l) in a playbook, and repartition by hand")
    elif program == "parted" and _PARTED_WRITES & {literal(w) for w in opts.operands}:
        report.add("PB404", call.at, why + "use 'parted DEVICE print' in a playbook, and repartition by hand")
    elif program == "shred" and devices:
        report.add("PB404", call.at, why + "name a file, not a device")
    elif program == "tee" and devices:
        report.add("PB405", call.at, f"'{call.shown()}' writes straight onto a device, destroying the disk's data "
                                     "and filesystem; write to a file instead")
    elif program in _COPIERS and len(opts.operands) >= 2 and device(opts.operands[-1]):
        report.add("PB404", call.at, why + "copy to an image file; write disks by hand, not from a playbook")
    elif program == "truncate" and any(device(w) for w in options(call.args, _TRUNCATE_VALUES).operands):
        report.add("PB404", call.at, why + "truncate files, never devices")
    elif program in _ERASERS and devices and _erases(program, flags, opts.operands):
        report.add("PB404", call.at, why + "erase or reformat disks by hand, not from a playbook")


def _of(word: Word) -> bool:
    """`of=/dev/sda`: the output file of dd is a device."""
    value = word.value
    return value.startswith("of=/dev/") and not _SAFE_DEVICES.fullmatch(value[3:])


def _erases(program: str, flags: set[str], operands: list[Word]) -> bool:
    if program in _ERASE_FLAGS:
        return bool(_ERASE_FLAGS[program] & flags)
    if program in _ERASE_WORDS:
        return bool(_ERASE_WORDS[program] & {literal(w) for w in operands})
    return True
