//! An identity provider's JWKS endpoint: a real HTTP server (axum) in the test process on
//! port 0, serving a key set the test swaps at will and counting the fetches.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

/// A signing key of the identity provider, with its `kid`.
pub struct SigningKey {
    pub kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    /// The RSA key of the fixtures (generating RSA keys is slow).
    pub fn rsa(kid: &str) -> Self {
        let pem = include_bytes!("../../fixtures/jwt-rsa-private.pem");
        let key = EncodingKey::from_rsa_pem(pem).expect("the RSA fixture");
        Self::new(kid, Algorithm::RS256, key)
    }

    /// A fresh EC P-256 key.
    pub fn ec(kid: &str) -> Self {
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("a P-256 key")
            .serialize_pem();
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("a PKCS#8 P-256 key");
        Self::new(kid, Algorithm::ES256, key)
    }

    /// The Ed25519 key of the fixtures (jsonwebtoken reads only PKCS#8 v1 Ed25519 keys, which
    /// rcgen does not write).
    pub fn ed(kid: &str) -> Self {
        let pem = include_bytes!("../../fixtures/jwt-ed25519-private.pem");
        let key = EncodingKey::from_ed_pem(pem).expect("the Ed25519 fixture");
        Self::new(kid, Algorithm::EdDSA, key)
    }

    fn new(kid: &str, algorithm: Algorithm, key: EncodingKey) -> Self {
        Self {
            kid: kid.into(),
            algorithm,
            key,
        }
    }

    /// The public half as a JWK.
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).expect("a public JWK");
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).expect("a JWK as JSON")
    }

    /// A JWT with these claims, signed with this key and naming its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// A JWT signed with this key but naming `kid`.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.key).expect("a signed JWT")
    }
}

#[derive(Default)]
struct Endpoint {
    document: Mutex<Value>,
    down: AtomicBool,
    requests: AtomicUsize,
}

/// The running endpoint; dropping it stops the server.
pub struct JwksServer {
    pub addr: SocketAddr,
    endpoint: Arc<Endpoint>,
    task: JoinHandle<()>,
}

impl JwksServer {
    /// Serves `keys` at `/jwks.json`.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let endpoint = Arc::new(Endpoint::default());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the JWKS server");
        let addr = listener.local_addr().expect("the JWKS server's address");
        let router = Router::new()
            .route("/jwks.json", get(key_set))
            .with_state(endpoint.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the JWKS server runs");
        });
        let server = Self {
            addr,
            endpoint,
            task,
        };
        server.serve(keys);
        server
    }

    pub fn url(&self) -> url::Url {
        format!("http://{}/jwks.json", self.addr)
            .parse()
            .expect("a JWKS URL")
    }

    /// From now on, the set holds exactly `keys`.
    pub fn serve(&self, keys: &[&SigningKey]) {
        let keys: Vec<Value> = keys.iter().map(|key| key.jwk()).collect();
        *self
            .endpoint
            .document
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = json!({ "keys": keys });
    }

    /// While down, the endpoint answers 503.
    pub fn set_down(&self, down: bool) {
        self.endpoint.down.store(down, Ordering::SeqCst);
    }

    /// How many times the set was asked for so far.
    pub fn requests(&self) -> usize {
        self.endpoint.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn key_set(State(endpoint): State<Arc<Endpoint>>) -> impl IntoResponse {
    endpoint.requests.fetch_add(1, Ordering::SeqCst);
    if endpoint.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let document = endpoint
        .document
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    axum::Json(document).into_response()
}
