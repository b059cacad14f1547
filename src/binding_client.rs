//! The client side of bound sessions: make a client key, keep it in a
//! 0600 file, sign a proof per request and attach it.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use clawgate::binding_client::BindingClient;
//!
//! let client = BindingClient::load_or_generate("client.key".as_ref())?;
//! // Offer `client.key().public_paserk()` as `client_key` at /auth/login,
//! // then, for every request made with the session token it returns:
//! let mut req = http::Request::get("/v1/items?limit=5").body(())?;
//! client.attach(&mut req, "v4.public.…")?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use http::{HeaderValue, Request, header};

use crate::clock::{Clock as _, SystemClock};
pub use crate::gateway::session_manager::binding::{ClientKey, ClientKeyError, PROOF_HEADER};
use crate::secret_file::{mode_of, write_secret};

/// A client key plus the request plumbing around it.
#[derive(Debug)]
pub struct BindingClient {
    key: ClientKey,
}

impl BindingClient {
    /// A client around an existing key.
    pub fn new(key: ClientKey) -> Self {
        Self { key }
    }

    /// A client with a fresh key (not saved).
    pub fn generate() -> Result<Self, ClientError> {
        Ok(Self::new(ClientKey::generate()?))
    }

    /// Reads the key file (one line, PASERK `k4.secret`). Refuses a file
    /// that group or others can read: the key is the session's second
    /// factor, and a readable one is as good as a copied one.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let io = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = mode_of(path).map_err(io)?;
        if mode & 0o077 != 0 {
            return Err(ClientError::InsecureKeyFile {
                path: path.to_owned(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Ok(Self::new(ClientKey::from_paserk(&text)?))
    }

    /// Writes the key file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let mut line = self.key.to_paserk()?;
        line.push('\n');
        write_secret(path, line.as_bytes()).map_err(|source| ClientError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// [`load`](Self::load)s the key file, or generates and saves a key
    /// when there is none.
    pub fn load_or_generate(path: &Path) -> Result<Self, ClientError> {
        if path.exists() {
            return Self::load(path);
        }
        let client = Self::generate()?;
        client.save(path)?;
        Ok(client)
    }

    /// The key.
    pub fn key(&self) -> &ClientKey {
        &self.key
    }

    /// A fresh proof for `method` and the path-and-query `uri`, made for
    /// `token`, dated now.
    pub fn proof(&self, method: &str, uri: &str, token: &str) -> Result<String, ClientError> {
        self.proof_at(method, uri, token, SystemClock.now())
    }

    /// [`proof`](Self::proof) dated `now`.
    pub fn proof_at(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        now: SystemTime,
    ) -> Result<String, ClientError> {
        Ok(self.key.sign_proof_at(method, uri, token, now)?)
    }

    /// Sets `Authorization: Bearer <token>` and a fresh `Clawgate-Proof`
    /// for the request's method and path-and-query.
    pub fn attach<B>(&self, req: &mut Request<B>, token: &str) -> Result<(), ClientError> {
        self.attach_at(req, token, SystemClock.now())
    }

    /// [`attach`](Self::attach) with a proof dated `now`.
    pub fn attach_at<B>(
        &self,
        req: &mut Request<B>,
        token: &str,
        now: SystemTime,
    ) -> Result<(), ClientError> {
        let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let proof = self.proof_at(req.method().as_str(), uri, token, now)?;
        let proof = HeaderValue::try_from(proof).map_err(|_| ClientError::InvalidHeader)?;
        let mut bearer = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::InvalidHeader)?;
        bearer.set_sensitive(true);
        let headers = req.headers_mut();
        headers.insert(header::AUTHORIZATION, bearer);
        headers.insert(PROOF_HEADER, proof);
        Ok(())
    }
}

/// Why the client could not load, save or attach.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The key could not be made, parsed or used.
    #[error(transparent)]
    Key(#[from] ClientKeyError),
    /// The key file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is readable by group or others.
    #[error("{}: mode {mode:o} lets others read the client key; chmod 600 it", path.display())]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The token is not a valid header value.
    #[error("the token cannot be sent in a header")]
    InvalidHeader,
}
