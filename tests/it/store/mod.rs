//! Durability of the store (`src/store`).
mod crash;
