//! The user's role, from an attribute of the assertion and the account's mapping.

use crate::domain::Role;
use crate::store::SsoRoleRecord;

/// Admin wins over agent when the user has values of both. With no matching value, the
/// account's default (agent) applies if set; otherwise the login is refused with a message
/// saying which attribute and values were expected.
pub fn resolve_role(mapping: &SsoRoleRecord, values: &[String]) -> Result<Role, String> {
    let has = |wanted: &[String]| values.iter().any(|v| wanted.iter().any(|w| w == v.trim()));
    if has(&mapping.admin_values) {
        return Ok(Role::Admin);
    }
    if has(&mapping.agent_values) {
        return Ok(Role::Agent);
    }
    if mapping.default_agent {
        return Ok(Role::Agent);
    }
    let got = if values.is_empty() {
        format!("the IdP sent no '{}' attribute", mapping.attribute)
    } else {
        format!(
            "the IdP sent '{}' = {}",
            mapping.attribute,
            values
                .iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(format!(
        "you are not allowed to use this helpdesk: {got}, and only {admin} (admin) or {agent} (agent) give access. Ask your administrator to grant you one of these in the identity provider.",
        admin = quoted(&mapping.admin_values),
        agent = quoted(&mapping.agent_values),
    ))
}

fn quoted(values: &[String]) -> String {
    if values.is_empty() {
        return "(none)".into();
    }
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(default_agent: bool) -> SsoRoleRecord {
        SsoRoleRecord {
            attribute: "groups".into(),
            admin_values: vec!["helpdesk-admins".into()],
            agent_values: vec!["helpdesk".into(), "support".into()],
            default_agent,
        }
    }

    #[test]
    fn maps_values_to_roles() {
        let m = mapping(false);
        assert_eq!(resolve_role(&m, &["support".into()]).unwrap(), Role::Agent);
        assert_eq!(
            resolve_role(&m, &["support".into(), "helpdesk-admins".into()]).unwrap(),
            Role::Admin
        );
        let err = resolve_role(&m, &["sales".into()]).unwrap_err();
        assert!(
            err.contains("\"sales\"") && err.contains("helpdesk-admins"),
            "{err}"
        );
        let err = resolve_role(&m, &[]).unwrap_err();
        assert!(err.contains("no 'groups' attribute"), "{err}");
        assert_eq!(
            resolve_role(&mapping(true), &["sales".into()]).unwrap(),
            Role::Agent
        );
    }
}
