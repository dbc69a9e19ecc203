//! HTCondor (X10): reading what its commands print and its job event log.
//! The backend that submits through `condor_submit` builds on these parsers.

pub mod parse;
