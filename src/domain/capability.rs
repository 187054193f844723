//! What a role may do: on the admin side, and (`CreatePersonalToken`) for oneself. A site
//! admin may do everything.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Capability {
    ViewAllKeys,
    RevokeAnyKey,
    EndSessions,
    IssueTokens,
    ManageServices,
    ViewAudit,
    /// Create one's own personal access tokens (not an admin power: it opens no admin page).
    CreatePersonalToken,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::ViewAllKeys,
        Capability::RevokeAnyKey,
        Capability::EndSessions,
        Capability::IssueTokens,
        Capability::ManageServices,
        Capability::ViewAudit,
        Capability::CreatePersonalToken,
    ];

    /// Whether it is a power over other people's keys: those open the admin pages, and a
    /// person holding one is not acted on by someone without it.
    pub fn is_admin(self) -> bool {
        self != Capability::CreatePersonalToken
    }

    /// Stored names, in Moodle's `component:capability` style.
    pub fn name(self) -> &'static str {
        match self {
            Capability::ViewAllKeys => "tool/userkeys:viewall",
            Capability::RevokeAnyKey => "tool/userkeys:revokeany",
            Capability::EndSessions => "tool/userkeys:endsessions",
            Capability::IssueTokens => "tool/userkeys:issuetokens",
            Capability::ManageServices => "tool/userkeys:manageservices",
            Capability::ViewAudit => "tool/userkeys:viewaudit",
            Capability::CreatePersonalToken => "tool/userkeys:createpersonaltoken",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Capability::ViewAllKeys => "view every key on the site",
            Capability::RevokeAnyKey => "revoke anyone's keys",
            Capability::EndSessions => "end all sessions of a user (force logout)",
            Capability::IssueTokens => "issue tokens for other users",
            Capability::ManageServices => "enable and disable services and key types",
            Capability::ViewAudit => "view the audit trail",
            Capability::CreatePersonalToken => "create personal access tokens for oneself",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The roles a new site has, with their capabilities.
pub const DEFAULT_ROLES: &[(&str, &str, &[Capability])] = &[
    ("keymanager", "Key manager", &Capability::ALL),
    ("auditor", "Auditor", &[Capability::ViewAllKeys, Capability::ViewAudit]),
    ("helpdesk", "Help desk", &[Capability::ViewAllKeys, Capability::EndSessions, Capability::RevokeAnyKey]),
    ("integrator", "Integrator (personal access tokens)", &[Capability::CreatePersonalToken]),
];
