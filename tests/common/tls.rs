//! TLS in front of librdkafka's mock broker, which speaks only plaintext: a fresh PKI for every
//! test (rcgen), and a TLS terminator (OpenSSL) on 127.0.0.1 that pipes each connection to the
//! mock's plaintext listener. The mock advertises the terminator's address, so every client
//! (the daemon, the publisher) goes through TLS.

use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer as _};
use std::ffi::{CStr, CString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A certificate authority writing its certificates into `dir`.
pub struct Pki {
    dir: PathBuf,
    name: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Pki {
    /// A new CA; its certificate is `<dir>/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Pki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            params,
            key,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// Issue a certificate for `names` (DNS names or IP addresses); returns (cert, key) paths.
    /// `expired` makes one that ended in 2020.
    pub fn issue(&self, file: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, file);
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert_path, key_path)
    }
}

/// The mock broker behind a TLS terminator.
pub struct TlsBroker {
    /// Owns the mock cluster (a client created with `test.mock.num.brokers`).
    _mock_owner: BaseProducer,
    pub port: u16,
    terminator: JoinHandle<()>,
}

impl TlsBroker {
    /// Start the mock with the topic, and a terminator presenting `cert`/`key`; with
    /// `client_ca`, it requires a client certificate issued by that CA.
    pub async fn start(
        topic: &str,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> TlsBroker {
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .unwrap();
        // SAFETY: the mock cluster lives as long as `owner`, which this struct keeps.
        let (mock, plaintext) = unsafe {
            let mock = rdkafka_sys::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
            assert!(!mock.is_null());
            let bootstraps = CStr::from_ptr(rdkafka_sys::rd_kafka_mock_cluster_bootstraps(mock));
            (
                mock,
                bootstraps
                    .to_str()
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .to_owned(),
            )
        };

        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acceptor.set_certificate_chain_file(cert).unwrap();
        acceptor
            .set_private_key_file(key, SslFiletype::PEM)
            .unwrap();
        if let Some(ca) = client_ca {
            acceptor.set_ca_file(ca).unwrap();
            acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        let acceptor = acceptor.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let terminator = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let ssl = Ssl::new(acceptor.context()).unwrap();
                let plaintext = plaintext.clone();
                tokio::spawn(async move {
                    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                    if Pin::new(&mut tls).accept().await.is_err() {
                        return;
                    }
                    let Ok(mut upstream) = TcpStream::connect(&plaintext).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });

        let host = CString::new("127.0.0.1").unwrap();
        let topic = CString::new(topic).unwrap();
        // SAFETY: valid mock cluster pointer and NUL-terminated strings.
        unsafe {
            rdkafka_sys::rd_kafka_mock_broker_set_host_port(
                mock,
                1,
                host.as_ptr(),
                i32::from(port),
            );
            let err = rdkafka_sys::rd_kafka_mock_topic_create(mock, topic.as_ptr(), 1, 1);
            assert_eq!(
                err,
                rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            );
        }
        TlsBroker {
            _mock_owner: owner,
            port,
            terminator,
        }
    }

    /// The terminator as a `kafka.server` value.
    pub fn server(&self) -> String {
        format!("127.0.0.1@{}", self.port)
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        self.terminator.abort();
    }
}
