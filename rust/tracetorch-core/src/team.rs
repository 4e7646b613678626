//! A fixed team of threads that share the work of one layer at a time, with
//! a hand-over of about 100 ns.
//!
//! Why not rayon: a job handed to rayon's pool from outside it waits on a
//! condition variable (a lock, and a futex wake-up per join), which costs
//! microseconds, tens on a busy machine; a step of a few microseconds
//! cannot afford that. Here the workers spin between jobs for a while
//! ([`SPIN_FOR`]), then sleep, and the calling thread claims shares as well:
//! it never waits for a worker that has not started, at worst it runs every
//! share itself. Which thread runs a share never changes its result.

use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next job before it sleeps: steps
/// called back to back from Python are a few microseconds apart.
const SPIN_FOR: Duration = Duration::from_millis(1);

/// Shares of one job at most (they are counted in 16 bits).
pub(crate) const MAX_PARTS: usize = 0xffff;

/// The job word: generation (32 bits), shares (16), shares claimed (16).
/// One word, so that a claim (a compare-exchange) is checked against the
/// generation and size it claims from.
fn word(generation: u64, parts: usize) -> u64 {
    (generation << 32) | ((parts as u64) << 16)
}

fn generation(word: u64) -> u64 {
    word >> 32
}

/// What the team's threads share.
struct Shared {
    job: AtomicU64,
    /// The running job: a pointer to a `&(dyn Fn(usize, usize) + Sync)` on
    /// the calling thread's stack, valid while the job has unfinished shares.
    task: AtomicPtr<()>,
    /// Shares finished (run or panicked) of the running job.
    done: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
    /// Workers that entered their loop.
    started: AtomicUsize,
    /// Per worker: it is (about to be) parked and needs an unpark.
    asleep: Vec<AtomicBool>,
}

type Task<'a> = &'a (dyn Fn(usize, usize) + Sync);

impl Shared {
    /// Claims the next share of job `generation`, if it has one left.
    fn claim(&self, generation_: u64) -> Option<usize> {
        let mut w = self.job.load(Ordering::Acquire);
        loop {
            let (parts, claimed) = ((w >> 16) & 0xffff, w & 0xffff);
            if generation(w) != generation_ || claimed >= parts {
                return None;
            }
            match self
                .job
                .compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(claimed as usize),
                Err(now) => w = now,
            }
        }
    }

    /// Runs the shares of job `generation_` it can claim, as thread `thread`.
    fn help(&self, generation_: u64, thread: usize) {
        while let Some(part) = self.claim(generation_) {
            // SAFETY: the claim succeeded, so this share is unfinished and the
            // caller of `Team::run` is still waiting with `task` on its stack;
            // `task` was stored before the job word our claim read from.
            let task: Task<'_> = unsafe { *self.task.load(Ordering::Acquire).cast::<Task<'_>>() };
            if catch_unwind(AssertUnwindSafe(|| task(part, thread))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// The calling thread plus `threads - 1` workers (see the module docs).
pub(crate) struct Team {
    shared: Arc<Shared>,
    workers: Vec<(Thread, JoinHandle<()>)>,
    generation: u64,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &self.threads())
            .finish()
    }
}

impl Clone for Team {
    fn clone(&self) -> Team {
        Team::new(self.threads())
    }
}

impl Team {
    /// A team of `threads` (at least the caller); fewer if the system refuses
    /// to start more threads.
    pub(crate) fn new(threads: usize) -> Team {
        let workers = threads.max(1) - 1;
        let shared = Arc::new(Shared {
            job: AtomicU64::new(word(0, 0)),
            task: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            started: AtomicUsize::new(0),
            asleep: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        });
        let mut team = Team {
            shared,
            workers: Vec::with_capacity(workers),
            generation: 0,
        };
        for index in 0..workers {
            let shared = Arc::clone(&team.shared);
            let spawned = std::thread::Builder::new()
                .name(format!("tracetorch-{}", index + 1))
                .spawn(move || work(&shared, index));
            match spawned {
                Ok(handle) => team.workers.push((handle.thread().clone(), handle)),
                Err(_) => break,
            }
        }
        // A thread allocates as it starts: that happens here, not in a step.
        while team.shared.started.load(Ordering::Acquire) < team.workers.len() {
            std::thread::yield_now();
        }
        team
    }

    /// Threads that run shares, the caller included.
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `task(part, thread)` for every `part` in `0..parts` (at most
    /// [`MAX_PARTS`]), each exactly once, spread over the team; `thread`
    /// (below [`Team::threads`]) names the thread running it, and no two
    /// shares run on the same `thread` at once. Returns when all are done.
    ///
    /// # Panics
    /// If a share panicked (after every share has finished).
    pub(crate) fn run(&mut self, parts: usize, task: &(dyn Fn(usize, usize) + Sync)) {
        assert!(parts <= MAX_PARTS, "{parts} shares, at most {MAX_PARTS}");
        if parts < 2 || self.workers.is_empty() {
            (0..parts).for_each(|part| task(part, 0));
            return;
        }
        let shared = &*self.shared;
        self.generation = (self.generation + 1) & 0xffff_ffff;
        shared.done.store(0, Ordering::Relaxed);
        shared.task.store(
            std::ptr::from_ref(&task).cast_mut().cast(),
            Ordering::Relaxed,
        );
        // SeqCst pairs with the sleeping worker's: either it sees this job
        // or this sees it asleep.
        shared
            .job
            .store(word(self.generation, parts), Ordering::SeqCst);
        for ((thread, _), asleep) in self.workers.iter().zip(&shared.asleep) {
            if asleep.load(Ordering::SeqCst) {
                thread.unpark();
            }
        }
        shared.help(self.generation, 0);
        let mut spins = 0u32;
        while shared.done.load(Ordering::Acquire) < parts {
            // A worker took a share and was descheduled: let it run.
            if spins < 1 << 12 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        shared.task.store(std::ptr::null_mut(), Ordering::Relaxed);
        if shared.panicked.swap(false, Ordering::Relaxed) {
            panic!("a share of a layer panicked on a tracetorch thread");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (thread, handle) in self.workers.drain(..) {
            thread.unpark();
            // A worker only returns or runs caught shares: it cannot have panicked.
            let _ = handle.join();
        }
    }
}

/// A worker's loop: wait for a job (spin, then sleep), help with it, repeat.
fn work(shared: &Shared, index: usize) {
    shared.started.fetch_add(1, Ordering::Release);
    let mut seen = generation(shared.job.load(Ordering::Acquire));
    let mut idle = Instant::now();
    let mut spins = 0u32;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let now = generation(shared.job.load(Ordering::Acquire));
        if now != seen {
            seen = now;
            shared.help(seen, index + 1);
            idle = Instant::now();
            continue;
        }
        spins = spins.wrapping_add(1);
        std::hint::spin_loop();
        // The clock is read once per 256 spins (a few microseconds).
        if spins.is_multiple_of(256) && idle.elapsed() > SPIN_FOR {
            let asleep = &shared.asleep[index];
            asleep.store(true, Ordering::SeqCst);
            if generation(shared.job.load(Ordering::SeqCst)) == seen
                && !shared.stop.load(Ordering::SeqCst)
            {
                std::thread::park();
            }
            asleep.store(false, Ordering::SeqCst);
            idle = Instant::now();
        }
    }
}

/// A mutable slice whose disjoint ranges are handed to the shares of a
/// [`Team::run`] job, one range per share.
pub(crate) struct Shares<'a, T> {
    ptr: *mut T,
    len: usize,
    _slice: PhantomData<&'a mut [T]>,
}

// SAFETY: it hands out disjoint `&mut [T]` (see `Shares::range`), which are
// `Send` when `T` is.
unsafe impl<T: Send> Sync for Shares<'_, T> {}

impl<'a, T> Shares<'a, T> {
    pub(crate) fn new(slice: &'a mut [T]) -> Self {
        Shares {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _slice: PhantomData,
        }
    }

    /// Elements of the whole slice.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The elements in `range`.
    ///
    /// # Safety
    /// No two live results may overlap: each share takes ranges no other
    /// share takes, and each thread index a range of its own.
    pub(crate) unsafe fn range(&self, range: Range<usize>) -> &'a mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked), and not aliased (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

/// Where share `part` of `parts` starts when `units` are shared as evenly as
/// possible (monotone in `part`; share `parts` ends at `units`).
pub(crate) fn share_start(units: usize, parts: usize, part: usize) -> usize {
    units * part / parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_share_runs_once_on_a_thread_of_its_own() {
        for threads in [1, 2, 3, 5] {
            let mut team = Team::new(threads);
            assert_eq!(team.threads(), threads);
            for parts in [0, 1, 2, 7, 64, 1000] {
                let runs: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                let busy: Vec<AtomicBool> = (0..threads).map(|_| AtomicBool::new(false)).collect();
                team.run(parts, &|part, thread| {
                    assert!(
                        !busy[thread].swap(true, Ordering::SeqCst),
                        "thread {thread} twice"
                    );
                    runs[part].fetch_add(1, Ordering::Relaxed);
                    busy[thread].store(false, Ordering::SeqCst);
                });
                assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn shares_fill_disjoint_ranges() {
        let mut team = Team::new(3);
        let mut data = vec![0usize; 1003];
        for parts in 1..40 {
            data.fill(0);
            let len = data.len();
            let shares = Shares::new(&mut data);
            team.run(parts, &|part, _| {
                let range = share_start(len, parts, part)..share_start(len, parts, part + 1);
                // SAFETY: the shares' ranges are disjoint.
                unsafe { shares.range(range) }.fill(part + 1);
            });
            for part in 0..parts {
                let range = share_start(len, parts, part)..share_start(len, parts, part + 1);
                assert!(data[range].iter().all(|v| *v == part + 1));
            }
            assert_eq!(share_start(len, parts, parts), len);
        }
    }

    #[test]
    fn workers_sleep_and_wake() {
        let mut team = Team::new(2);
        // Idle for longer than it spins, the worker parks (a busy machine may
        // take a while to schedule it).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !team.shared.asleep[0].load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the idle worker never slept");
            std::thread::sleep(SPIN_FOR);
        }
        let ran = AtomicUsize::new(0);
        for _ in 0..100 {
            team.run(4, &|_, _| {
                ran.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(ran.load(Ordering::Relaxed), 400);
    }

    #[test]
    fn a_panicking_share_is_reported_after_the_others() {
        let mut team = Team::new(2);
        let ran = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            team.run(8, &|part, _| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(part != 3, "share 3 fails");
            })
        }));
        assert!(result.is_err());
        assert_eq!(ran.load(Ordering::Relaxed), 8);
        // The team still works.
        team.run(8, &|_, _| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 16);
    }
}
