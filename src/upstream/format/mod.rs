//! Vendor formats: how a channel's vendor wants its request and how it says "sent".
//!
//! `kapool` sends the full text (`content` + `mobile`) and reads `ReturnStatus`;
//! `template` sends the vendor's template id and parameters and reads a configured
//! field. The marketplace gateway's own answers are the same for every format and are
//! classified in `upstream::classify`, not here.

mod body;
mod form;
mod kapool;
mod params;
mod template;
mod vendor_format;

pub use body::BodyFields;
pub use form::decode_form;
pub use params::{ParamsError, ParamsIn, ParamsStyle, UnknownParamsIn, UnknownParamsStyle};
pub use template::TemplateFormat;
pub use vendor_format::{RequestError, VendorFormat, VendorMessage, VendorRequest};
