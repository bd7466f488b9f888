//! Work for every online CPU: the [`Workers`] a job runs on. The kernel's
//! are the boot CPU and the application processors waiting in their
//! mailboxes (`dispatch`). Host tests use the calling thread alone or
//! several threads.
#![deny(unsafe_code)]

/// Runs one closure on several CPUs at once.
pub(crate) trait Workers {
    /// How many CPUs [`Workers::run`] runs on, the calling one included.
    fn cpus(&self) -> usize;
    /// Runs `work` once on each of them, the calling CPU included, and
    /// returns when every one has returned. `work` shares the job out
    /// itself (an atomic counter over pieces, say).
    fn run(&self, work: &(dyn Fn() + Sync));
}

/// The calling CPU alone, for host tests (the kernel's `OnlineCpus` is
/// that too when no other CPU is online).
#[cfg(test)]
pub(crate) struct ThisCpu;

#[cfg(test)]
impl Workers for ThisCpu {
    fn cpus(&self) -> usize {
        1
    }

    fn run(&self, work: &(dyn Fn() + Sync)) {
        work();
    }
}

/// `cpus` threads, the calling one included, for host tests.
#[cfg(test)]
pub(crate) struct Threads(pub(crate) usize);

#[cfg(test)]
impl Workers for Threads {
    fn cpus(&self) -> usize {
        self.0
    }

    fn run(&self, work: &(dyn Fn() + Sync)) {
        std::thread::scope(|scope| {
            for _ in 1..self.0 {
                scope.spawn(work);
            }
            work();
        });
    }
}
