//! Connection limits and slow clients (`src/net`), over real loopback TCP.
mod connection_limits;
