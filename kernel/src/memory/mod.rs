//! Physical memory management.

pub mod frames;
