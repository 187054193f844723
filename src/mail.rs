//! Sending email through the SMTP server the site names (`USERKEYS_SMTP_URL`). Without one,
//! nothing is sent and the features that need mail say so.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("no SMTP server is configured (USERKEYS_SMTP_URL)")]
    NotConfigured,
    #[error("bad address: {0}")]
    Address(String),
    #[error("the message could not be built: {0}")]
    Build(String),
    #[error("the SMTP server did not take the message: {0}")]
    Send(String),
}

/// One plain-text message to one person.
pub struct Mail {
    pub to_name: String,
    pub to_address: String,
    pub subject: String,
    pub body: String,
}

pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl Mailer {
    /// A mailer for `smtp_url` (`smtp://host:25`, `smtp://host:587?tls=required`,
    /// `smtps://user:pass@host:465`), sending from `from`.
    pub fn new(smtp_url: Option<&str>, from: &str) -> anyhow::Result<Self> {
        let transport = match smtp_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("USERKEYS_SMTP_URL: {e}"))?
                    .timeout(Some(std::time::Duration::from_secs(15)))
                    .build(),
            ),
            None => None,
        };
        let from = from.parse().map_err(|e| anyhow::anyhow!("USERKEYS_MAIL_FROM “{from}”: {e}"))?;
        Ok(Mailer { transport, from })
    }

    pub fn configured(&self) -> bool {
        self.transport.is_some()
    }

    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let transport = self.transport.as_ref().ok_or(MailError::NotConfigured)?;
        let address = mail.to_address.parse().map_err(|_| MailError::Address(mail.to_address.clone()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(Some(mail.to_name), address))
            .subject(mail.subject)
            .body(mail.body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        transport.send(message).await.map_err(|e| MailError::Send(e.to_string()))?;
        Ok(())
    }
}
