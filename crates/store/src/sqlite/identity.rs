//! SQLite implementation of [`crate::IdentityStore`].

use super::{SqliteStore, db_err, is_unique_violation, query_doc, query_docs, to_doc, ts};
use crate::identity::IdentityStore;
use async_trait::async_trait;
use nimbus_model::identity::{Project, Role, RoleAssignment, Token, User};
use nimbus_model::time::Timestamp;
use nimbus_model::{Error, ProjectId, Result, RoleId, UserId};

fn conflict(kind: &str, name: &str) -> impl Fn(rusqlite::Error) -> Error {
    let msg = format!(
        "Conflict occurred attempting to store {kind} - Duplicate entry found with name {name}."
    );
    move |e| {
        if is_unique_violation(&e) {
            Error::AlreadyExists(msg.clone())
        } else {
            db_err(e)
        }
    }
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn project_create(&self, p: Project) -> Result<Project> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO projects (id, name, domain_id, doc) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![p.id.as_str(), p.name, p.domain_id.as_str(), to_doc(&p)?],
            )
            .map_err(conflict("project", &p.name))?;
            Ok(p)
        })
        .await
    }

    async fn project_get(&self, id: ProjectId) -> Result<Option<Project>> {
        self.read_point(move |c| query_doc(c, "SELECT doc FROM projects WHERE id = ?1", [id.0]))
            .await
    }

    async fn project_get_by_name(
        &self,
        domain_id: String,
        name: String,
    ) -> Result<Option<Project>> {
        self.read_point(move |c| {
            query_doc(
                c,
                "SELECT doc FROM projects WHERE domain_id = ?1 AND name = ?2",
                [domain_id, name],
            )
        })
        .await
    }

    async fn projects_list(&self) -> Result<Vec<Project>> {
        self.read(|c| query_docs(c, "SELECT doc FROM projects ORDER BY name", []))
            .await
    }

    async fn project_update(&self, p: Project) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE projects SET name = ?1, doc = ?2 WHERE id = ?3",
                    rusqlite::params![p.name, to_doc(&p)?, p.id.as_str()],
                )
                .map_err(conflict("project", &p.name))?;
            Ok(n == 1)
        })
        .await
    }

    async fn project_delete(&self, id: ProjectId) -> Result<bool> {
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM projects WHERE id = ?1", [id.0])
                .map_err(db_err)?
                == 1)
        })
        .await
    }

    async fn user_create(&self, u: User) -> Result<User> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO users (id, name, domain_id, doc) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![u.id.as_str(), u.name, u.domain_id.as_str(), to_doc(&u)?],
            )
            .map_err(conflict("user", &u.name))?;
            Ok(u)
        })
        .await
    }

    async fn user_get(&self, id: UserId) -> Result<Option<User>> {
        self.read_point(move |c| query_doc(c, "SELECT doc FROM users WHERE id = ?1", [id.0]))
            .await
    }

    async fn user_get_by_name(&self, domain_id: String, name: String) -> Result<Option<User>> {
        self.read_point(move |c| {
            query_doc(
                c,
                "SELECT doc FROM users WHERE domain_id = ?1 AND name = ?2",
                [domain_id, name],
            )
        })
        .await
    }

    async fn users_list(&self) -> Result<Vec<User>> {
        self.read(|c| query_docs(c, "SELECT doc FROM users ORDER BY name", []))
            .await
    }

    async fn user_update(&self, u: User) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE users SET name = ?1, doc = ?2 WHERE id = ?3",
                    rusqlite::params![u.name, to_doc(&u)?, u.id.as_str()],
                )
                .map_err(conflict("user", &u.name))?;
            Ok(n == 1)
        })
        .await
    }

    async fn user_delete(&self, id: UserId) -> Result<bool> {
        self.write(move |tx| {
            tx.execute("DELETE FROM tokens WHERE user_id = ?1", [id.as_str()])
                .map_err(db_err)?;
            Ok(tx
                .execute("DELETE FROM users WHERE id = ?1", [id.0])
                .map_err(db_err)?
                == 1)
        })
        .await
    }

    async fn role_create(&self, r: Role) -> Result<Role> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO roles (id, name) VALUES (?1, ?2)",
                [r.id.as_str(), &r.name],
            )
            .map_err(conflict("role", &r.name))?;
            Ok(r)
        })
        .await
    }

    async fn role_get(&self, id: RoleId) -> Result<Option<Role>> {
        self.read_point(move |c| {
            use rusqlite::OptionalExtension;
            c.query_row("SELECT id, name FROM roles WHERE id = ?1", [id.0], |r| {
                Ok(Role {
                    id: RoleId(r.get(0)?),
                    name: r.get(1)?,
                })
            })
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn role_get_by_name(&self, name: String) -> Result<Option<Role>> {
        self.read_point(move |c| {
            use rusqlite::OptionalExtension;
            c.query_row("SELECT id, name FROM roles WHERE name = ?1", [name], |r| {
                Ok(Role {
                    id: RoleId(r.get(0)?),
                    name: r.get(1)?,
                })
            })
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn roles_list(&self) -> Result<Vec<Role>> {
        self.read_point(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id, name FROM roles ORDER BY name")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Role {
                        id: RoleId(r.get(0)?),
                        name: r.get(1)?,
                    })
                })
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn assignment_add(&self, a: RoleAssignment) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO role_assignments (user_id, project_id, role_id) \
                 VALUES (?1, ?2, ?3)",
                [
                    a.user_id.as_str(),
                    a.project_id.as_str(),
                    a.role_id.as_str(),
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Error::NotFound(
                        "Could not find the user, project or role of the assignment.".into(),
                    )
                }
                e => db_err(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn assignment_remove(&self, a: RoleAssignment) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM role_assignments WHERE user_id = ?1 AND project_id = ?2 AND role_id = ?3",
                    [a.user_id.as_str(), a.project_id.as_str(), a.role_id.as_str()],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn roles_for(&self, user: UserId, project: ProjectId) -> Result<Vec<Role>> {
        self.read_point(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT r.id, r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id \
                     WHERE a.user_id = ?1 AND a.project_id = ?2 ORDER BY r.name",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([user.as_str(), project.as_str()], |r| {
                    Ok(Role {
                        id: RoleId(r.get(0)?),
                        name: r.get(1)?,
                    })
                })
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn assignments_list(&self) -> Result<Vec<RoleAssignment>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT user_id, project_id, role_id FROM role_assignments")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(RoleAssignment {
                        user_id: UserId(r.get(0)?),
                        project_id: ProjectId(r.get(1)?),
                        role_id: RoleId(r.get(2)?),
                    })
                })
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn token_insert(&self, t: Token) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO tokens (hash, user_id, expires_at, doc) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![t.hash, t.user_id.as_str(), ts(&t.expires_at), to_doc(&t)?],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn token_get(&self, hash: String) -> Result<Option<Token>> {
        self.read_point(move |c| query_doc(c, "SELECT doc FROM tokens WHERE hash = ?1", [hash]))
            .await
    }

    async fn token_delete(&self, hash: String) -> Result<bool> {
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM tokens WHERE hash = ?1", [hash])
                .map_err(db_err)?
                == 1)
        })
        .await
    }

    async fn tokens_purge(&self, now: Timestamp) -> Result<u64> {
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM tokens WHERE expires_at < ?1", [ts(&now)])
                .map_err(db_err)? as u64)
        })
        .await
    }
}
