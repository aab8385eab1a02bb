//! The project README, compiled and run as doc-tests so its examples stay true.
#![doc = include_str!("../../README.md")]
