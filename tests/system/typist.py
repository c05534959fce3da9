#!/usr/bin/python3
"""typist.py type|hold|keys-down: a uinput keyboard for the booted-system tier's kloak checks.

type:      creates "anon-test-keyboard", waits for kloak's twin "kloak: anon-test-keyboard",
           types h-e-l-l-o (press, release, SYN each) and prints the key codes the twin emitted
           (presses only), in order; exits 0 when they are exactly what was typed.
hold:      creates the keyboard, waits for the twin, presses KEY_A without releasing it and
           stays alive (the caller kills kloak meanwhile); writes "held" to stdout.
keys-down: prints how many keys the twin currently reports down (EVIOCGKEY), 0 expected.
escape:    presses kloak's escape combination (right Shift + Escape) on the test keyboard.
Only the kernel's input ABI (struct input_event, uinput's legacy uinput_user_dev), no modules.
"""
import fcntl
import os
import select
import struct
import sys
import time

EV_SYN, EV_KEY = 0, 1
UI_SET_EVBIT, UI_SET_KEYBIT = 0x40045564, 0x40045565
UI_DEV_CREATE = 0x5501
NAME = b"anon-test-keyboard"
KEYS = {"h": 35, "e": 18, "l": 38, "o": 24, "a": 30}
EVENT = struct.Struct("llHHi")


def eviocgname(n=256):
    return (2 << 30) | (n << 16) | (ord("E") << 8) | 0x06


def eviocgkey(n=96):
    return (2 << 30) | (n << 16) | (ord("E") << 8) | 0x18


def keyboard():
    fd = os.open("/dev/uinput", os.O_WRONLY | os.O_NONBLOCK)
    fcntl.ioctl(fd, UI_SET_EVBIT, EV_KEY)
    for code in range(1, 120):
        fcntl.ioctl(fd, UI_SET_KEYBIT, code)
    # struct uinput_user_dev: name[80], input_id (4 x u16), ff_effects_max, abs arrays.
    dev = NAME.ljust(80, b"\0") + struct.pack("HHHHi", 3, 0x1234, 0x5678, 1, 0) + b"\0" * (4 * 64 * 4)
    os.write(fd, dev)
    fcntl.ioctl(fd, UI_DEV_CREATE)
    return fd


def twin(timeout=15.0):
    want = b"kloak: " + NAME
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for n in sorted(os.listdir("/dev/input")):
            if not n.startswith("event"):
                continue
            try:
                fd = os.open("/dev/input/" + n, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            buf = bytearray(256)
            try:
                fcntl.ioctl(fd, eviocgname(), buf)
            except OSError:
                os.close(fd)
                continue
            if bytes(buf).split(b"\0")[0] == want:
                return fd
            os.close(fd)
        time.sleep(0.2)
    sys.exit("no kloak twin of the test keyboard appeared")


def emit(fd, code, value):
    os.write(fd, EVENT.pack(0, 0, EV_KEY, code, value) + EVENT.pack(0, 0, EV_SYN, 0, 0))


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "type"
    if mode == "keys-down":
        fd = twin()
        buf = bytearray(96)
        fcntl.ioctl(fd, eviocgkey(), buf)
        print(sum(bin(b).count("1") for b in buf))
        return 0
    kb = keyboard()
    tw = twin()
    if mode == "escape":
        time.sleep(0.5)
        emit(kb, 54, 1)
        emit(kb, 1, 1)
        time.sleep(1)
        emit(kb, 1, 0)
        emit(kb, 54, 0)
        time.sleep(2)
        return 0
    if mode == "hold":
        time.sleep(0.5)
        emit(kb, KEYS["a"], 1)
        print("held", flush=True)
        time.sleep(60)
        return 0
    time.sleep(0.5)
    typed = [KEYS[c] for c in "hello"]
    for code in typed:
        emit(kb, code, 1)
        emit(kb, code, 0)
    got = []
    end = time.monotonic() + 5
    while time.monotonic() < end and len(got) < len(typed):
        if select.select([tw], [], [], 0.5)[0]:
            data = os.read(tw, EVENT.size * 64)
            for i in range(0, len(data), EVENT.size):
                _, _, typ, code, value = EVENT.unpack_from(data, i)
                if typ == EV_KEY and value == 1:
                    got.append(code)
    print(" ".join(map(str, got)))
    return 0 if got == typed else 1


if __name__ == "__main__":
    sys.exit(main())
