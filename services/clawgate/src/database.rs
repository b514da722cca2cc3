//! The databases of the storing services (session, auth): which URL each one
//! uses, connecting a service's pool at start, and `clawgate migrate`.
//!
//! Roles on PostgreSQL: migrations run as the role that owns the schemas (a
//! superuser or the database owner); the services run as an application role
//! without `SUPERUSER`/`BYPASSRLS`, so row-level security applies to them.
//! `clawgate migrate --app-role <role>` grants that role data rights (no DDL) on
//! each service's schema once its migrations ran.
//!
//! Invariants: every service pool opened by [`open`] checks at start whether its
//! role bypasses row-level security and logs a warning if so; database URLs are
//! never logged (they may hold a password).

use anyhow::Context;
use clawgate_auth::{AuthConfig, AuthService, GatewayToken};
use clawgate_runtime::db::{Backend, Database};
use clawgate_session::SessionService;

use crate::cli::{MigrateArgs, Service};

/// The services that keep data, in migration order.
pub const STORING_SERVICES: [Service; 2] = [Service::Session, Service::Auth];

/// The database URL a storing service uses: PostgreSQL URLs are shared (each
/// service has its own schema); a SQLite URL names one file per service
/// (`clawgate.sqlite` ⇒ `clawgate.session.sqlite`) so each keeps its own
/// migration history.
pub fn database_url_for(url: &str, service: &str) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url.to_owned();
    };
    let (path, query) = rest
        .split_once('?')
        .map_or((rest, None), |(p, q)| (p, Some(q)));
    let path = std::path::Path::new(path);
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("clawgate");
    let ext = path
        .extension()
        .and_then(|s| s.to_str())
        .unwrap_or("sqlite");
    let file = path.with_file_name(format!("{stem}.{service}.{ext}"));
    match query {
        Some(query) => format!("sqlite://{}?{query}", file.display()),
        None => format!("sqlite://{}?mode=rwc", file.display()),
    }
}

/// The schema (PostgreSQL) of a storing service.
fn schema_of(service: Service) -> anyhow::Result<&'static str> {
    match service {
        Service::Session => Ok(clawgate_session::SCHEMA),
        Service::Auth => Ok(clawgate_auth::SCHEMA),
        Service::Edge | Service::Runner => anyhow::bail!("{service} keeps no data"),
    }
}

/// Connects `service`'s pool on `url` (the shared URL, made specific here) and
/// warns when its role bypasses row-level security.
pub async fn open(url: &str, service: Service) -> anyhow::Result<Database> {
    let url = database_url_for(url, service.name());
    let db = Database::connect(&url, schema_of(service)?)
        .await
        .with_context(|| format!("cannot connect the {service} database"))?;
    db.warn_if_bypassing_rls().await;
    Ok(db)
}

/// Runs `service`'s migrations on `db`.
async fn migrate_service(db: &Database, service: Service) -> anyhow::Result<()> {
    match service {
        Service::Session => SessionService::from_database(db.clone()).migrate().await?,
        Service::Auth => {
            // Migrations need no settings: an empty configuration will do.
            let config = AuthConfig {
                gateway_token: GatewayToken::new(""),
                default_tenant_id: String::new(),
                default_user_id: String::new(),
                owner_ids: Vec::new(),
                auto_approve_local: false,
                keyring: None,
            };
            AuthService::from_database(db.clone(), config)
                .migrate()
                .await?;
        }
        Service::Edge | Service::Runner => anyhow::bail!("{service} keeps no data"),
    }
    Ok(())
}

/// `clawgate migrate`: every storing service's migrations, each followed by
/// the grants of the application role when one is named.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let app_role = args.app_role.as_deref().filter(|role| !role.is_empty());
    for service in STORING_SERVICES {
        let url = database_url_for(&args.database_url, service.name());
        let db = Database::connect(&url, schema_of(service)?)
            .await
            .with_context(|| format!("cannot connect the {service} database"))?;
        migrate_service(&db, service).await?;
        tracing::info!(service = service.name(), "migrations applied");
        if let Some(role) = app_role
            && db.backend() == Backend::Postgres
        {
            db.grant_to_app_role(role)
                .await
                .with_context(|| format!("cannot grant {role} its rights on {service}"))?;
            tracing::info!(service = service.name(), role, "application role granted");
        }
        db.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::database_url_for;

    #[test]
    fn sqlite_urls_get_one_file_per_service() {
        assert_eq!(
            database_url_for("sqlite:///data/clawgate.sqlite", "session"),
            "sqlite:///data/clawgate.session.sqlite?mode=rwc"
        );
        assert_eq!(
            database_url_for("sqlite://db/x.db?mode=rwc", "auth"),
            "sqlite://db/x.auth.db?mode=rwc"
        );
        assert_eq!(
            database_url_for("postgres://u@h/db", "session"),
            "postgres://u@h/db"
        );
    }
}
