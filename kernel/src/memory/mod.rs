//! Physical memory: the frame allocator (host-tested logic), and on the
//! target the identity map over all RAM, uncached mappings of device
//! memory above it, the reader of physical memory through it, and the
//! heap.

pub(crate) mod frames;
#[cfg(target_os = "none")]
pub(crate) mod heap;
#[cfg(target_os = "none")]
mod identity_map;
#[cfg(target_os = "none")]
pub(crate) mod mmio;
#[cfg(target_os = "none")]
pub(crate) mod physical;

#[cfg(target_os = "none")]
pub(crate) use machine::{FRAMES, Memory, init};

#[cfg(target_os = "none")]
mod machine {
    extern crate alloc;

    use arrayvec::ArrayVec;
    use mote_boot::start_info::memory_map::MAX_REGIONS;
    use mote_boot::start_info::{BootInfo, PhysicalMemory};
    use spin::Mutex;

    use super::frames::{FRAME_SIZE, FrameAllocator};
    use super::physical::IdentityMapped;
    use super::{heap, identity_map};
    use crate::{boot, trace};

    /// Low memory holds the loader's structures (qboot's stack, start_info,
    /// command line, MP table, EBDA): never hand it out (docs/pvh.md).
    const LOW_MEMORY_END: u64 = 0x10_0000;
    /// Heap size: an eighth of free RAM, between these bounds.
    const HEAP_MIN: u64 = 256 * 1024;
    const HEAP_MAX: u64 = 64 * 1024 * 1024;
    /// Reserved ranges tracked: low memory, the image, the modules.
    const MAX_RESERVED: usize = 2 + mote_boot::start_info::MAX_MODULES;

    /// The kernel's physical frames, filled once by [`init`]; the heap and
    /// virtio DMA memory come from here.
    pub(crate) static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new_empty());

    /// What memory set-up left: the identity map's reach and the heap size.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Memory {
        pub(crate) mapped: IdentityMapped,
        pub(crate) heap_bytes: usize,
    }

    /// Maps all RAM, builds the frame allocator, gives the heap its frames.
    /// A machine without usable RAM, or whose RAM cannot be mapped, is a
    /// fatal boot error.
    pub(crate) fn init(boot: &BootInfo) -> Memory {
        let map = &boot.memory_map;
        if map.usable_bytes() == 0 {
            boot::fatal(format_args!(
                "no usable RAM: start_info v{} gave {} memory map entries",
                boot.version, boot.memory_map_entries
            ));
        }
        let (kernel_start, kernel_end) = mote_boot::pvh::kernel_image();
        let mut reserved: ArrayVec<(u64, u64), MAX_RESERVED> = ArrayVec::new();
        reserved.push((0, LOW_MEMORY_END));
        reserved.push((kernel_start, kernel_end));
        for module in &boot.modules {
            let _ = reserved.try_push((module.paddr, module.paddr + module.size));
        }
        let usable: ArrayVec<(u64, u64), MAX_REGIONS> = map
            .usable()
            .map(|region| (region.start, region.end))
            .collect();
        // Filled where it stays: boot is the allocator's only user until
        // memory_init returns (the guard is dropped then).
        let mut frames = FRAMES.lock();
        {
            let _span = trace::span("frame_allocator");
            frames.refill(&usable, &reserved);
        }

        let mapped = {
            let _span = trace::span("identity_map");
            match identity_map::map_up_to(map.ram_end(), &mut frames) {
                Ok(mapped) => mapped,
                Err(error) => boot::fatal(format_args!("cannot map RAM above 4 GiB: {error}")),
            }
        };
        let memory_end = mapped.end();
        if map.ram_end() > memory_end {
            log::warn!(
                "RAM above {memory_end:#x} is not mapped (identity map limit); {} bytes unused",
                map.ram_end() - memory_end
            );
            let below: ArrayVec<(u64, u64), MAX_REGIONS> = usable
                .iter()
                .map(|&(start, end)| (start, end.min(memory_end)))
                .collect();
            frames.refill(&below, &reserved);
        }

        let _span = trace::span("heap_init");
        let heap_bytes = (frames.free_bytes() / 8).clamp(HEAP_MIN, HEAP_MAX) & !(FRAME_SIZE - 1);
        let heap_start = match frames.allocate(heap_bytes / FRAME_SIZE, 1) {
            Ok(start) => start,
            Err(error) => boot::fatal(format_args!(
                "no room for a {heap_bytes}-byte heap: {error}"
            )),
        };
        let heap_size = usize::try_from(heap_bytes).unwrap_or(usize::MAX);
        // SAFETY: the frames were just taken from the allocator, are identity
        // mapped, and are given to the heap once (`init` runs once: boot
        // calls it, and the frames go to `FRAMES` below).
        unsafe { heap::init(heap_start, heap_size) };
        let probe = alloc::boxed::Box::new(0x6d6f_7465_u32);
        if *probe != 0x6d6f_7465 {
            boot::fatal(format_args!("heap self-test failed"));
        }
        drop(probe);

        // Prove the highest RAM frame is really mapped and backed.
        if let Some(top) = map.usable().map(|r| r.end.min(memory_end)).max() {
            let last = (top - FRAME_SIZE) & !(FRAME_SIZE - 1);
            let mut byte = [0u8; 1];
            if mapped.read(last, &mut byte).is_err() {
                boot::fatal(format_args!("top of RAM {last:#x} is not reachable"));
            }
        }

        drop(frames);
        Memory {
            mapped,
            heap_bytes: heap::size(),
        }
    }
}
