#!/usr/bin/python3
"""typist.py type|hold|keys-down|led|escape: a uinput keyboard for the booted-system tier's kloak checks.

type:      creates "anon-test-keyboard", waits for kloak's twin (the same name, phys "kloak/..."),
           types h-e-l-l-o (press, release, SYN each) and prints the key codes the twin emitted
           (presses only), in order; exits 0 when they are exactly what was typed.
hold:      creates the keyboard, waits for the twin, presses KEY_A without releasing it and
           stays alive (the caller kills kloak meanwhile); writes "held" to stdout.
keys-down: prints how many keys the twin currently reports down (EVIOCGKEY), 0 expected.
led:       writes Caps Lock's LED on to the twin and waits until the test keyboard's own uinput
           handle receives it (kloak forwards LED changes to the real device).
escape:    presses kloak's escape combination (right Shift + Escape) on the test keyboard.
Only the kernel's input ABI (struct input_event, uinput's legacy uinput_user_dev), no modules.
"""
import fcntl
import os
import select
import struct
import sys
import time

EV_SYN, EV_KEY, EV_LED = 0, 1, 0x11
LED_CAPSL = 1
UI_SET_EVBIT, UI_SET_KEYBIT, UI_SET_LEDBIT = 0x40045564, 0x40045565, 0x40045569
UI_DEV_CREATE = 0x5501
NAME = b"anon-test-keyboard"
KEYS = {"h": 35, "e": 18, "l": 38, "o": 24, "a": 30}
EVENT = struct.Struct("llHHi")


def eviocgname(n=256):
    return (2 << 30) | (n << 16) | (ord("E") << 8) | 0x06


def eviocgphys(n=256):
    return (2 << 30) | (n << 16) | (ord("E") << 8) | 0x07


def eviocgkey(n=96):
    return (2 << 30) | (n << 16) | (ord("E") << 8) | 0x18


def keyboard():
    fd = os.open("/dev/uinput", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, UI_SET_EVBIT, EV_KEY)
    for code in range(1, 120):
        fcntl.ioctl(fd, UI_SET_KEYBIT, code)
    fcntl.ioctl(fd, UI_SET_EVBIT, EV_LED)
    for led in range(3):
        fcntl.ioctl(fd, UI_SET_LEDBIT, led)
    # struct uinput_user_dev: name[80], input_id (4 x u16), ff_effects_max, abs arrays.
    dev = NAME.ljust(80, b"\0") + struct.pack("HHHHi", 3, 0x1234, 0x5678, 1, 0) + b"\0" * (4 * 64 * 4)
    os.write(fd, dev)
    fcntl.ioctl(fd, UI_DEV_CREATE)
    return fd


def twin(timeout=15.0, mode=os.O_RDONLY):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for n in sorted(os.listdir("/dev/input")):
            if not n.startswith("event"):
                continue
            try:
                fd = os.open("/dev/input/" + n, mode | os.O_NONBLOCK)
            except OSError:
                continue
            name, phys = bytearray(256), bytearray(256)
            try:
                fcntl.ioctl(fd, eviocgname(), name)
                fcntl.ioctl(fd, eviocgphys(), phys)
            except OSError:
                # A device without phys (ours has none) is not a twin.
                os.close(fd)
                continue
            if bytes(name).split(b"\0")[0] == NAME and bytes(phys).startswith(b"kloak/"):
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
    tw = twin(mode=os.O_RDWR if mode == "led" else os.O_RDONLY)
    if mode == "led":
        # As X or a compositor lights Caps Lock: an LED event written to the twin. kloak
        # must carry it to the (grabbed) real keyboard, whose uinput handle then reads it.
        time.sleep(0.5)
        os.write(tw, EVENT.pack(0, 0, EV_LED, LED_CAPSL, 1) + EVENT.pack(0, 0, EV_SYN, 0, 0))
        end = time.monotonic() + 5
        while time.monotonic() < end:
            if select.select([kb], [], [], 0.5)[0]:
                data = os.read(kb, EVENT.size * 16)
                for i in range(0, len(data) - EVENT.size + 1, EVENT.size):
                    _, _, typ, code, value = EVENT.unpack_from(data, i)
                    if (typ, code, value) == (EV_LED, LED_CAPSL, 1):
                        print("caps lock lit")
                        return 0
        print("the real keyboard's caps lock LED was never set")
        return 1
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
