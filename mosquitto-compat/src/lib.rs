//! A differential MQTT 3.1.1 conformance suite: the same raw-packet scenario
//! is played against a stock Mosquitto and against bluetick, and what each
//! broker sends back is compared line by line.
//!
//! # Layout
//! - [`script`] parses a scenario file (`scenarios/*.mqtt`): a few
//!   declarative steps such as `connect a id=@a keepalive=0`,
//!   `send a publish @/t qos=1 id=7` and `recv a = PUBACK id=7`.
//! - [`packet`] encodes the packets a step sends (or raw bytes, for
//!   malformed input) and renders what comes back as one readable line.
//! - [`play`] runs a scenario against one broker address over plain TCP and
//!   records a [`play::Transcript`]: one line per `recv`/`quiet` step.
//! - [`mosquitto`] starts a stock Mosquitto on a free loopback port.
//! - [`suite`] loads every scenario, plays each against both brokers and
//!   judges it against `DIFFERENCES.md`.
//!
//! A scenario passes when both transcripts are equal and Mosquitto also
//! matches every expectation written in the scenario (`recv a = ...`), which
//! checks the scenario itself against the normative statement it cites.

pub mod mosquitto;
pub mod packet;
pub mod play;
pub mod script;
pub mod suite;
