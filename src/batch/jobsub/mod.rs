//! Fermilab's jobsub_lite (X10), HTCondor's front end at Fermilab: reading
//! what its commands print. The backend that submits through
//! `jobsub_submit` builds on these parsers.

pub mod parse;
