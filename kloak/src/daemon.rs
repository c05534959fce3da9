//! The shell: read grabbed devices, schedule with the core, write virtual devices.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use evdev::{Device, EventType};
use log::{info, warn};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rand_chacha::ChaCha20Rng;
use tokio::sync::mpsc;

use crate::devices::{classify, event_nodes, Kind};
use crate::schedule::{
    EscDetector, Event, Frame, HoldFloor, KeysDown, Micros, Queue, EV_SYN, SYN_REPORT,
};
use crate::twin::{forward_leds, is_twin, monotonic_timestamps, Twin, EV_LED};

#[derive(Debug, Clone)]
pub struct Options {
    pub max_delay: Duration,
    /// The hold-time rule for ordinary keys (None: upstream's rule only).
    pub hold_floor: Option<HoldFloor>,
    /// Keys treated like modifiers besides Shift, Ctrl, Alt, AltGr, Meta, CapsLock.
    pub extra_modifiers: Vec<u16>,
    pub start_delay: Duration,
    /// Explicit devices; empty means every keyboard (and pointer) under `input_dir`, with hotplug.
    pub devices: Vec<PathBuf>,
    pub no_mouse: bool,
    pub esc_combo: Vec<u16>,
    pub input_dir: PathBuf,
}

type DevId = u32;

enum Msg {
    Frame(DevId, Vec<Event>, Micros),
    Gone(DevId),
}

/// What `attach` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attach {
    Grabbed,
    /// Not a device kloak takes.
    Skipped,
    /// A twin exists for this node already.
    Taken,
    /// Keys are held on it: try again shortly.
    KeysHeld(usize),
}

/// Frames in flight from the device readers to the scheduler (each reader waits when full).
const CHANNEL_FRAMES: usize = 1024;
/// Frames queued for release at most; beyond, the oldest are written early.
const MAX_QUEUED: usize = 20_000;

/// How long a device with keys held is waited for (ticks of 250 ms) before it is grabbed anyway.
const HELD_TICKS: u32 = 40;
const HELD_WAIT: Duration = Duration::from_secs(HELD_TICKS as u64 / 4);
/// A device that cannot be attached is tried on this many ticks in a row, then every
/// `SLOW_RETRY` ticks (5 s) for as long as it is there.
const FAST_TRIES: u32 = 8;
const SLOW_RETRY: u32 = 20;

struct Output {
    path: PathBuf,
    twin: Twin,
    down: KeysDown,
    reader: tokio::task::JoinHandle<()>,
    leds: tokio::task::JoinHandle<()>,
}

impl Drop for Output {
    fn drop(&mut self) {
        self.reader.abort();
        self.leds.abort();
    }
}

/// The events of a frame without its SYN_REPORT (the twin's `emit` appends one).
fn payload(events: &[Event]) -> Vec<(u16, u16, i32)> {
    events
        .iter()
        .filter(|e| !(e.kind == EV_SYN && e.code == SYN_REPORT))
        .map(|e| (e.kind, e.code, e.value))
        .collect()
}

struct State {
    epoch: Instant,
    next_id: DevId,
    outputs: HashMap<DevId, Output>,
    tx: mpsc::Sender<Msg>,
    opts: Options,
    /// The shortest autorepeat delay of the grabbed keyboards.
    min_repeat_delay_ms: Option<u64>,
    /// Twins a write failed on (kloak is ending).
    broken: Vec<DevId>,
}

impl State {
    fn now(&self) -> Micros {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Grabs `path` if it is a device kloak handles and creates its virtual twin. Not while a
    /// key is held on it (EVIOCGKEY), unless `force`: the desktop saw that key go down on the
    /// real device, and after the grab its release would go to the twin, leaving the key stuck.
    fn attach(&mut self, path: &Path, explicit: bool, force: bool) -> anyhow::Result<Attach> {
        if self.outputs.values().any(|o| o.path == path) {
            // Ours already, or a replugged device on the same node whose unplug is not
            // handled yet: the caller keeps it pending for a while.
            return Ok(Attach::Taken);
        }
        // evdev 0.13 panics on a device whose name or phys fills its 256-byte buffer (it
        // asserts a NUL the kernel does not write when it cuts): any device, or any local user
        // allowed to make uinput devices, could crash kloak in a restart loop. Such a device
        // is an error for this device only.
        let mut dev = std::panic::catch_unwind(|| Device::open(path))
            .map_err(|_| anyhow::anyhow!("{}: its name or phys cannot be read", path.display()))?
            .with_context(|| format!("cannot open {}", path.display()))?;
        if is_twin(path, dev.physical_path()) {
            if explicit {
                anyhow::bail!("{} is a kloak twin", path.display());
            }
            return Ok(Attach::Skipped);
        }
        // Monotonic event timestamps, to tell the events buffered before the grab (below).
        let monotonic = monotonic_timestamps(std::os::fd::AsFd::as_fd(&dev)).is_ok();
        match classify(&dev) {
            Some(Kind::Keyboard) => {}
            Some(Kind::Pointer) if !self.opts.no_mouse => {}
            _ if explicit => anyhow::bail!("{} is neither a keyboard nor a mouse", path.display()),
            _ => return Ok(Attach::Skipped),
        }
        let held = dev.get_key_state().map_or(0, |k| k.iter().count());
        if held > 0 && !force {
            return Ok(Attach::KeysHeld(held));
        }
        if let Some(rep) = dev.get_auto_repeat() {
            let d = u64::from(rep.delay);
            if d > 0 {
                self.min_repeat_delay_ms = Some(self.min_repeat_delay_ms.map_or(d, |m| m.min(d)));
            }
        }
        let name = dev.name().unwrap_or("unnamed device").to_owned();
        let twin = Twin::of(&dev)
            .with_context(|| format!("cannot create a virtual device for {}", path.display()))?;
        // Everything the device stamped before this went to the desktop too (the device was
        // not grabbed yet): forwarding it again would repeat it (a keystroke typed twice, mouse
        // motion doubled). Without monotonic stamps nothing is dropped.
        let grabbed = monotonic.then(monotonic_now);
        dev.grab().with_context(|| {
            format!(
                "cannot grab {} (is another program grabbing it?)",
                path.display()
            )
        })?;
        // A key pressed between the check above and the grab went to the desktop: let go
        // again (the twin goes with `vdev`) and wait for its release.
        let held_now = dev.get_key_state().map_or(0, |k| k.iter().count());
        if held_now > 0 && !force {
            let _ = dev.ungrab();
            return Ok(Attach::KeysHeld(held_now));
        }
        // LED writes go through a second handle on the grabbed device itself (not the path,
        // which a replugged device could take over meanwhile).
        let real_fd = std::os::fd::AsFd::as_fd(&dev).try_clone_to_owned()?;
        let twin_fd = twin.reader()?;
        let mut stream = dev.into_event_stream()?;
        let leds = {
            let real = path.to_owned();
            tokio::spawn(async move {
                if let Err(e) = forward_leds(twin_fd, real_fd).await {
                    warn!("{}: LEDs no longer forwarded: {e}", real.display());
                }
            })
        };
        let id = self.next_id;
        self.next_id += 1;
        let (tx, epoch) = (self.tx.clone(), self.epoch);
        let real_name = path.to_owned();
        let reader = tokio::spawn(async move {
            let mut frame = Vec::new();
            let mut behind = false;
            loop {
                match stream.next_event().await {
                    // The LED changes kloak forwards come back from the grabbed device: the
                    // twin has them already.
                    Ok(ev) if ev.event_type().0 == EV_LED => {}
                    // Already seen by the desktop: it came before the grab.
                    Ok(ev) if grabbed.is_some_and(|g| ev.timestamp() < g) => {}
                    Ok(ev) => {
                        frame.push(Event {
                            kind: ev.event_type().0,
                            code: ev.code(),
                            value: ev.value(),
                        });
                        if ev.event_type() == EventType::SYNCHRONIZATION && ev.code() == SYN_REPORT
                        {
                            if frame.len() == 1 {
                                // Only the SYN_REPORT of a forwarded LED change.
                                frame.clear();
                                continue;
                            }
                            let now =
                                u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                            // A full channel makes this reader wait (the kernel buffers meanwhile):
                            // memory stays bounded and nothing is dropped here. The kernel's
                            // buffer is small, though: if it overflows, the evdev crate resyncs
                            // the key state (nothing stuck) but the events in between are gone,
                            // so falling behind is said (once per device).
                            let msg = Msg::Frame(id, std::mem::take(&mut frame), now);
                            let msg = match tx.try_send(msg) {
                                Ok(()) => continue,
                                Err(mpsc::error::TrySendError::Closed(_)) => return,
                                Err(mpsc::error::TrySendError::Full(msg)) => msg,
                            };
                            if !behind {
                                behind = true;
                                warn!("{}: kloak fell behind this device's input; if the kernel's buffer overflows, events are lost", real_name.display());
                            }
                            if tx.send(msg).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(_) => {
                        let _ = tx.send(Msg::Gone(id)).await;
                        return;
                    }
                }
            }
        });
        if held > 0 {
            warn!(
                "grabbed {} with {held} key(s) still held after waiting {} s: the desktop may keep them down until kloak stops",
                path.display(),
                u64::from(HELD_TICKS) / 4
            );
        }
        info!("grabbed {} ({name})", path.display());
        self.outputs.insert(
            id,
            Output {
                path: path.to_owned(),
                twin,
                down: KeysDown::default(),
                reader,
                leds,
            },
        );
        Ok(Attach::Grabbed)
    }

    /// Writes a frame to its device's twin. A failed write ends kloak, which then releases
    /// every key: a frame is never dropped silently.
    fn emit(&mut self, f: Frame<DevId>) -> anyhow::Result<()> {
        let Some(out) = self.outputs.get_mut(&f.device) else {
            return Ok(());
        };
        // One write per frame: it went out whole or not at all. A failed write ends kloak
        // (keys released on the way out, and the unit restarts it) rather than dropping it.
        out.twin.emit(&payload(&f.events)).with_context(|| {
            format!(
                "cannot write to the virtual device of {}",
                out.path.display()
            )
        })?;
        out.down.track(&f.events);
        Ok(())
    }

    /// [`Self::emit`], keeping the first error for the caller to end kloak with. The frames
    /// after a failed one still go out to the other twins (they were taken from the queue:
    /// skipping them would lose them), and `shutdown` releases every key.
    fn emit_or_fail(&mut self, f: Frame<DevId>, failure: &mut Option<anyhow::Error>) {
        // Nothing more to a twin whose write failed: after a lost release the input core
        // would drop the same key's next press ("aa" typed as "a").
        if self.broken.contains(&f.device) {
            return;
        }
        let device = f.device;
        if let Err(e) = self.emit(f) {
            self.broken.push(device);
            if failure.is_none() {
                *failure = Some(e);
            } else {
                warn!("{e:#}");
            }
        }
    }

    /// Releases every key still down on every virtual device and drops all grabs.
    fn shutdown(&mut self, queue: &mut Queue<DevId>) {
        for f in queue.drain() {
            if self.broken.contains(&f.device) {
                continue;
            }
            if let Err(e) = self.emit(f) {
                warn!("{e:#}");
            }
        }
        for out in self.outputs.values_mut() {
            let release = out.down.release_all();
            if !release.is_empty() {
                let _ = out.twin.emit(&payload(&release));
            }
        }
        self.outputs.clear();
    }
}

/// CLOCK_MONOTONIC as evdev's timestamps carry it once `monotonic_timestamps` is set (the
/// crate turns the kernel's timeval into a `SystemTime` after the epoch).
fn monotonic_now() -> SystemTime {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(Duration::ZERO, Duration::from);
    SystemTime::UNIX_EPOCH + t
}

/// systemd's STATUS=: how many devices are protected (and waited for).
fn status_line(state: &State, waiting: usize) -> String {
    let mut line = format!("protecting {} device(s)", state.outputs.len());
    if waiting > 0 {
        line += &format!(", {waiting} waiting");
    }
    line
}

/// The floor must stay below every keyboard's autorepeat delay (minus 10 ms of margin).
fn clamp_floor(state: &State, queue: &mut Queue<DevId>) {
    if let Some(d) = state.min_repeat_delay_ms {
        if let Some(f) = queue.clamp_floor(d.saturating_sub(10) * 1000) {
            warn!(
                "hold floor clamped to {}-{} ms: a keyboard repeats after {d} ms",
                f.min / 1000,
                f.max / 1000
            );
        }
    }
}

/// Runs until SIGTERM/SIGINT or the escape combination.
pub async fn run(opts: Options, mut rng: ChaCha20Rng) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // SIGHUP would end kloak by default, and systemd counts that as a clean exit: no restart,
    // keyboards unprotected. There is nothing to reload; it is said and ignored (from the
    // start: a HUP during the start delay would otherwise end kloak too).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // Let the user release the keys that started kloak before anything is grabbed.
    tokio::time::sleep(opts.start_delay).await;
    let (tx, mut rx) = mpsc::channel(CHANNEL_FRAMES);
    let max = u64::try_from(opts.max_delay.as_micros()).unwrap_or(u64::MAX);
    let mut state = State {
        epoch: Instant::now(),
        next_id: 0,
        outputs: HashMap::new(),
        tx,
        opts: opts.clone(),
        min_repeat_delay_ms: None,
        broken: Vec::new(),
    };
    let mut queue: Queue<DevId> =
        Queue::with_hold_floor(max, opts.hold_floor, &opts.extra_modifiers);
    let mut esc = EscDetector::new(opts.esc_combo.clone());

    let hotplug = opts.devices.is_empty();
    // Devices to (re)try on the next ticks: (path, tries, explicit, failing: its last attempt
    // was an error rather than held keys).
    let mut pending: Vec<(PathBuf, u32, bool, bool)> = Vec::new();
    if hotplug {
        let nodes = event_nodes(&opts.input_dir)
            .with_context(|| format!("cannot list {}", opts.input_dir.display()))?;
        for p in nodes {
            match state.attach(&p, false, false) {
                Ok(Attach::KeysHeld(n)) => {
                    info!(
                        "{}: {n} key(s) held; grabbing once they are released",
                        p.display()
                    );
                    pending.push((p, 1, false, false));
                }
                Ok(_) => {}
                Err(e) => {
                    // Retried on the next ticks, as a hotplugged device is (udev may still be
                    // setting it up, /dev/uinput may be busy for a moment).
                    warn!("{e:#} (retrying)");
                    pending.push((p, 1, false, true));
                }
            }
        }
    } else {
        for p in &opts.devices {
            if let Attach::KeysHeld(n) = state.attach(p, true, false)? {
                info!(
                    "{}: {n} key(s) held; grabbing once they are released",
                    p.display()
                );
                pending.push((p.clone(), 1, true, false));
            }
        }
    }
    clamp_floor(&state, &mut queue);
    if state.outputs.is_empty() && pending.is_empty() && !hotplug {
        anyhow::bail!("no device to protect");
    }
    let inotify = if hotplug {
        let i = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        i.add_watch(
            &opts.input_dir,
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ATTRIB,
        )?;
        Some(i)
    } else {
        None
    };
    info!(
        "protecting {} device(s), max delay {} ms",
        state.outputs.len(),
        opts.max_delay.as_millis()
    );
    // READY (the display manager and getty wait for it) once the devices present at start are
    // grabbed, or once the wait for their held keys is over.
    let started = Instant::now();
    let mut ready = false;
    let mut last_count = (usize::MAX, usize::MAX);
    let mut flooded = false;
    let mut failure: Option<anyhow::Error> = None;
    let far = Duration::from_secs(3600);
    let mut hotplug_tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        if failure.is_some() {
            break;
        }
        if !ready && (pending.is_empty() || started.elapsed() > HELD_WAIT) {
            ready = true;
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
        let count = (state.outputs.len(), pending.len());
        if count != last_count {
            last_count = count;
            let _ = sd_notify::notify(
                false,
                &[sd_notify::NotifyState::Status(&status_line(
                    &state, count.1,
                ))],
            );
        }
        let wake = queue
            .next_release()
            .map_or(state.epoch.elapsed() + far, Duration::from_micros);
        let sleep = tokio::time::sleep_until((state.epoch + wake).into());
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Frame(id, events, at)) => {
                    let escape = events.iter().any(|e| esc.feed(e));
                    queue.push(id, events, at, &mut rng);
                    // Memory stays bounded under a flood: past the limit the oldest frames go
                    // out at once (shorter delays for a moment, nothing lost), and it is said.
                    if queue.len() > MAX_QUEUED {
                        if !flooded {
                            warn!("more than {MAX_QUEUED} frames queued: writing the oldest early");
                            flooded = true;
                        }
                        for f in queue.pop_oldest(queue.len() - MAX_QUEUED) {
                            state.emit_or_fail(f, &mut failure);
                        }
                    } else if flooded && queue.len() < MAX_QUEUED / 2 {
                        flooded = false;
                    }
                    if escape {
                        info!("escape combination: releasing every device");
                        break;
                    }
                }
                Some(Msg::Gone(id)) => {
                    // Its queued frames go out now, through its twin, and whatever they leave
                    // down is released before the twin goes.
                    for f in queue.forget(&id) {
                        state.emit_or_fail(f, &mut failure);
                    }
                    if let Some(mut out) = state.outputs.remove(&id) {
                        let release = out.down.release_all();
                        // The escape detector forgets this device's keys only: a Right Shift
                        // held on the keyboard stays held when a mouse goes away.
                        for e in &release {
                            esc.feed(e);
                        }
                        if !release.is_empty() {
                            let _ = out.twin.emit(&payload(&release));
                        }
                        info!("{} went away", out.path.display());
                    }
                }
                None => break,
            },
            () = sleep => {
                let now = state.now();
                for f in queue.pop_due(now) {
                    state.emit_or_fail(f, &mut failure);
                }
            }
            _ = hotplug_tick.tick(), if inotify.is_some() || !pending.is_empty() => {
                // inotify is non-blocking; a tick every 250 ms covers a new device well within
                // a second. A node that cannot be opened yet (udev still setting permissions)
                // is retried on the next ticks, never by blocking the event loop.
                let names = inotify.as_ref().and_then(|i| i.read_events().ok()).unwrap_or_default();
                for n in names.into_iter().filter_map(|e| e.name) {
                    let p = opts.input_dir.join(n);
                    if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("event")) && !pending.iter().any(|(q, _, _, _)| *q == p) {
                        pending.push((p, 0, false, false));
                    }
                }
                pending.retain_mut(|(p, tries, explicit, failing)| {
                    if !p.exists() {
                        return false;
                    }
                    *tries = tries.saturating_add(1);
                    // A device that keeps failing is tried every 5 s, not on every tick.
                    if *failing && *tries > FAST_TRIES && *tries % SLOW_RETRY != 0 {
                        return true;
                    }
                    match state.attach(p, *explicit, *tries >= HELD_TICKS) {
                        Ok(Attach::KeysHeld(n)) => {
                            if *tries == 1 || *failing {
                                info!("{}: {n} key(s) held; grabbing once they are released", p.display());
                            }
                            *failing = false;
                            true
                        }
                        Ok(Attach::Taken) => *tries < FAST_TRIES,
                        Ok(_) => {
                            clamp_floor(&state, &mut queue);
                            false
                        }
                        Err(e) => {
                            // Not given up: a device kloak cannot attach types unprotected,
                            // so it is said (and counted as waiting in STATUS=) and retried
                            // for as long as it is there. Ending kloak instead would restart it
                            // in a loop and drop the devices it does protect each time.
                            *failing = true;
                            if *tries == FAST_TRIES || (*tries > FAST_TRIES && *tries % (SLOW_RETRY * 12) == 0) {
                                warn!("{e:#}: NOT protected; retrying every 5 s");
                            }
                            true
                        }
                    }
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => info!("SIGHUP: nothing to reload; still running"),
        }
    }
    state.shutdown(&mut queue);
    if let Some(e) = failure {
        return Err(
            e.context("stopped after a write error; every key released, every grab dropped")
        );
    }
    info!("stopped; every grab released");
    Ok(())
}
