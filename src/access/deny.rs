//! Why a standard user's Docker request was refused. Every refusal carries a
//! stable rule name: it goes into the error's `details`, the access log and
//! the `rule` label of `berth_access_denied_total{endpoint,rule}`, so the
//! names are part of Berth's interface and never change once shipped.

use http::StatusCode;

/// The rule that refused a request. [`DenyRule::name`] is the stable label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyRule {
    /// The route is reserved to administrators, or matches no rule at all
    /// (default deny: a new Docker route is closed until it gets a rule).
    AdminOnly,
    /// The object is not visible to the caller (no resource control grants it).
    ResourceAccess,
    /// The path cannot be read the one way Docker reads it (bad escape,
    /// dot segment, repeated or trailing slash, unexpected character).
    Path,
    /// A `/vX.Y` prefix Berth does not police (older than 1.24, newer than
    /// the newest version the table covers, or an odd spelling).
    ApiVersion,
    /// A query string Docker would read differently or refuse (`;`, bad
    /// escape, a checked parameter given twice).
    Query,
    /// The inspected body is not the JSON Docker expects.
    BodyInvalid,
    /// A JSON object repeats a key, or spells one known key two ways: Go's
    /// decoder would take the last one, so Berth refuses to guess.
    BodyAmbiguous,
    /// The inspected body is over [`super::MAX_INSPECTED_BODY`] (or its length
    /// cannot be known before forwarding).
    BodyTooLarge,
    BindMounts,
    Privileged,
    HostNamespace,
    DeviceMapping,
    Capabilities,
    Sysctls,
    SecurityOptions,
    /// `io.portainer.accesscontrol.*` labels that would share the new
    /// object in a way a standard user may not (Portainer's resource control
    /// update rule).
    AccessLabels,
}

impl DenyRule {
    /// The stable name for `details`, logs and the metric label.
    pub fn name(self) -> &'static str {
        match self {
            DenyRule::AdminOnly => "admin_only",
            DenyRule::ResourceAccess => "resource_access",
            DenyRule::Path => "path",
            DenyRule::ApiVersion => "api_version",
            DenyRule::Query => "query",
            DenyRule::BodyInvalid => "body_invalid",
            DenyRule::BodyAmbiguous => "body_ambiguous",
            DenyRule::BodyTooLarge => "body_too_large",
            DenyRule::BindMounts => "bind_mounts",
            DenyRule::Privileged => "privileged_mode",
            DenyRule::HostNamespace => "host_namespace",
            DenyRule::DeviceMapping => "device_mapping",
            DenyRule::Capabilities => "capabilities",
            DenyRule::Sysctls => "sysctls",
            DenyRule::SecurityOptions => "security_options",
            DenyRule::AccessLabels => "access_labels",
        }
    }

    /// 400 for what Docker could not read either, 413 over the cap, 403 for
    /// everything the caller may not do.
    pub fn status(self) -> StatusCode {
        match self {
            DenyRule::Path | DenyRule::Query | DenyRule::BodyInvalid | DenyRule::BodyAmbiguous => {
                StatusCode::BAD_REQUEST
            }
            DenyRule::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// Portainer's message where it has one (clients and the Docker CLI show
    /// it), a short sentence in the same style otherwise.
    pub fn message(self) -> &'static str {
        match self {
            DenyRule::AdminOnly | DenyRule::ResourceAccess => "Access denied to resource",
            DenyRule::Path => "Invalid Docker API path",
            DenyRule::ApiVersion => "Unsupported Docker API version",
            DenyRule::Query => "Invalid query string",
            DenyRule::BodyInvalid => "Invalid request payload",
            DenyRule::BodyAmbiguous => "Ambiguous request payload",
            DenyRule::BodyTooLarge => "Request payload too large",
            DenyRule::BindMounts => "forbidden to use bind mounts",
            DenyRule::Privileged => "forbidden to use privileged mode",
            DenyRule::HostNamespace => "forbidden to use host namespaces",
            DenyRule::DeviceMapping => "forbidden to use device mapping",
            DenyRule::Capabilities => "forbidden to use container capabilities",
            DenyRule::Sysctls => "forbidden to use sysctl settings",
            DenyRule::SecurityOptions => "forbidden to use security options",
            DenyRule::AccessLabels => "forbidden to set this access control",
        }
    }
}

/// A refusal: the rule and what triggered it (a field path such as
/// `HostConfig.Mounts[0].Type`, or the route). The detail names client
/// input only, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub rule: DenyRule,
    pub detail: String,
}

impl Denial {
    pub fn new(rule: DenyRule, detail: impl Into<String>) -> Self {
        Denial { rule, detail: detail.into() }
    }

    /// What the proxy answers when an inspected body is over the cap.
    pub fn too_large() -> Self {
        Denial::new(
            DenyRule::BodyTooLarge,
            format!("inspected bodies are limited to {} bytes", super::MAX_INSPECTED_BODY),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.rule.status()
    }

    pub fn message(&self) -> &'static str {
        self.rule.message()
    }

    /// The error's `details`: `rule <name>: <detail>`.
    pub fn details(&self) -> String {
        format!("rule {}: {}", self.rule.name(), self.detail)
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.details())
    }
}

impl std::error::Error for Denial {}

/// Shorthand for the policy's fallible results.
pub type Verdict<T> = Result<T, Denial>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_statuses_fit() {
        let all = [
            DenyRule::AdminOnly,
            DenyRule::ResourceAccess,
            DenyRule::Path,
            DenyRule::ApiVersion,
            DenyRule::Query,
            DenyRule::BodyInvalid,
            DenyRule::BodyAmbiguous,
            DenyRule::BodyTooLarge,
            DenyRule::BindMounts,
            DenyRule::Privileged,
            DenyRule::HostNamespace,
            DenyRule::DeviceMapping,
            DenyRule::Capabilities,
            DenyRule::Sysctls,
            DenyRule::SecurityOptions,
            DenyRule::AccessLabels,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(DenyRule::BodyAmbiguous.status(), StatusCode::BAD_REQUEST);
        assert_eq!(DenyRule::BodyTooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(DenyRule::Privileged.status(), StatusCode::FORBIDDEN);
        let d = Denial::new(DenyRule::Privileged, "HostConfig.Privileged");
        assert_eq!(d.details(), "rule privileged_mode: HostConfig.Privileged");
        assert_eq!(d.message(), "forbidden to use privileged mode");
    }
}
