pub mod v5;

pub const PROTOCOL_VERSION_5: u8 = 5;
pub const PROTOCOL_VERSION_311: u8 = 4;
