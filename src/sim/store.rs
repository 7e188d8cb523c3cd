//! The simulator's state in SQLite: `main.db` and `archive.db` (the two data-source roles; no
//! `archive.db` when the dataset has no archive), and `services.db` for Context Services
//! profiles and GMS callbacks. Attachment bytes live in files (`documents/`, or the dataset's
//! own files) so they stream. Everything here blocks: callers use `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::dataset::{Dataset, DatasetInteraction, relative_file};
use crate::ucs::wire::gms::WireCallback;
use crate::ucs::wire::{AttributesResult, ContentResult, WireAttachment, WireInteraction};
use crate::ucs::{DataSource, InteractionStatus};

const INTERACTIONS_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS contacts (
        id TEXT PRIMARY KEY, tenant INTEGER NOT NULL, attributes TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS contact_attributes (
        contact_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS contact_attributes_by_value
        ON contact_attributes (name, value);
    CREATE INDEX IF NOT EXISTS contact_attributes_by_contact
        ON contact_attributes (contact_id);
    CREATE TABLE IF NOT EXISTS interactions (
        id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, media_type TEXT NOT NULL,
        status TEXT NOT NULL, workbin TEXT, start_date TEXT, end_date TEXT,
        modified TEXT NOT NULL, subject TEXT, text TEXT, structured TEXT NOT NULL,
        stop_reason TEXT);
    CREATE INDEX IF NOT EXISTS interactions_by_contact
        ON interactions (contact_id, start_date, id);
    CREATE TABLE IF NOT EXISTS documents (
        id TEXT PRIMARY KEY, interaction_id TEXT NOT NULL, position INTEGER NOT NULL,
        name TEXT NOT NULL, mime_type TEXT NOT NULL, size INTEGER NOT NULL,
        path TEXT NOT NULL, owned INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS documents_by_interaction ON documents (interaction_id);
";

/// Every distinct attribute name, one index seek per name (see [`Store::attribute_names`]).
const ATTRIBUTE_NAMES: &str = "
    WITH RECURSIVE names(name) AS (
        SELECT MIN(name) FROM contact_attributes
        UNION ALL
        SELECT (SELECT MIN(a.name) FROM contact_attributes a WHERE a.name > names.name)
        FROM names WHERE names.name IS NOT NULL)
    SELECT name FROM names WHERE name IS NOT NULL";

const SERVICES_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS profiles (id TEXT PRIMARY KEY, fields TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS callbacks (
        id TEXT PRIMARY KEY, service_name TEXT NOT NULL, state TEXT NOT NULL,
        desired_time TEXT, customer_number TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS callbacks_by_number ON callbacks (customer_number);
    CREATE TABLE IF NOT EXISTS cs_services (
        id TEXT PRIMARY KEY, customer_id TEXT, contact_key TEXT, fields TEXT NOT NULL,
        states TEXT NOT NULL, tasks TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS cs_services_by_customer ON cs_services (customer_id);
    CREATE INDEX IF NOT EXISTS cs_services_by_key ON cs_services (contact_key);
";

/// One stored Context Services service: its resource (with `service_id` and `customer_id` or
/// `contact_key`), states and tasks.
#[derive(Debug, Clone)]
pub(crate) struct StoredService {
    pub(crate) resource: serde_json::Map<String, serde_json::Value>,
    pub(crate) states: Vec<serde_json::Value>,
    pub(crate) tasks: Vec<serde_json::Value>,
}

/// A failure of the simulator's own storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("simulator database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file could not be read or written.
    #[error("simulator file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The dataset holds something the store cannot take.
    #[error("dataset: {0}")]
    Dataset(String),
    /// A storage task panicked or was cancelled.
    #[error("simulator storage task failed")]
    Panicked,
}

/// One database file with a few reusable connections.
struct Db {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Db {
    fn open(path: PathBuf, schema: &str) -> Result<Self, StoreError> {
        // Created empty with mode 0600 before SQLite opens it: SQLite gives its -wal and -shm
        // files the database file's mode, and the data is personal (fictional or not).
        if !path.exists() {
            crate::durable::write_private(&path, b"")
                .map_err(|source| StoreError::Io { path: path.clone(), source })?;
        }
        let db = Self { path, idle: Mutex::new(Vec::new()) };
        db.run(|conn| conn.execute_batch(schema))?;
        Ok(db)
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    }

    fn run<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = f(&mut conn);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        Ok(result?)
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The simulator's whole state.
#[derive(Debug)]
pub(crate) struct Store {
    main: Db,
    archive: Option<Db>,
    services: Db,
    documents: PathBuf,
    /// UCS 9.x: `DataSource` is ignored, every role reads and writes the one store.
    one_store: bool,
}

/// A document to stream.
#[derive(Debug)]
pub(crate) struct DocumentFile {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) name: String,
    pub(crate) mime_type: String,
}

fn status_name(status: InteractionStatus) -> &'static str {
    match status {
        InteractionStatus::New => "New",
        InteractionStatus::Pending => "Pending",
        InteractionStatus::InProcess => "InProcess",
        InteractionStatus::Stopped => "Stopped",
    }
}

fn status_from_name(name: &str) -> InteractionStatus {
    match name {
        "New" => InteractionStatus::New,
        "Pending" => InteractionStatus::Pending,
        "InProcess" => InteractionStatus::InProcess,
        _ => InteractionStatus::Stopped,
    }
}

fn timestamp(text: Option<String>) -> Option<Timestamp> {
    text.and_then(|t| t.parse().ok())
}

impl Store {
    /// Opens the state in `dir`, seeding it from `dataset` unless it was seeded before.
    pub(crate) fn open(
        dir: &Path,
        dataset: &Dataset,
        dataset_path: &Path,
    ) -> Result<Self, StoreError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let documents = dir.join("documents");
        crate::durable::create_private_dir_all(dir).map_err(io(dir))?;
        crate::durable::create_private_dir_all(&documents).map_err(io(&documents))?;
        let marker = dir.join("seeded");
        let seeded = marker.exists();
        let archive_path = dir.join("archive.db");
        let has_archive = if seeded { archive_path.exists() } else { dataset.has_archive() };
        let store = Self {
            main: Db::open(dir.join("main.db"), INTERACTIONS_SCHEMA)?,
            archive: if has_archive {
                Some(Db::open(archive_path, INTERACTIONS_SCHEMA)?)
            } else {
                None
            },
            services: Db::open(dir.join("services.db"), SERVICES_SCHEMA)?,
            documents,
            one_store: !dataset.ucs_version.has_archive_role(),
        };
        if !seeded {
            store.seed(dataset, dataset_path)?;
            crate::durable::write_private(&marker, b"seeded\n").map_err(io(&marker))?;
        }
        Ok(store)
    }

    fn db(&self, source: DataSource) -> Option<&Db> {
        match source {
            DataSource::Main => Some(&self.main),
            // UCS 9.x ignores `DataSource` ("Ignored in 9.0"): archive is the one store again.
            DataSource::Archive if self.one_store => Some(&self.main),
            DataSource::Archive => self.archive.as_ref(),
        }
    }

    /// Whether the deployment has a data source with this role.
    pub(crate) fn has_source(&self, source: DataSource) -> bool {
        self.db(source).is_some()
    }

    fn seed(&self, dataset: &Dataset, dataset_path: &Path) -> Result<(), StoreError> {
        self.main.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for contact in &dataset.contacts {
                let attributes: BTreeMap<String, Vec<String>> =
                    contact.attributes.iter().map(|(k, v)| (k.clone(), v.values())).collect();
                let json = serde_json::to_string(&attributes).unwrap_or_else(|_| "{}".to_owned());
                tx.execute(
                    "INSERT INTO contacts (id, tenant, attributes) VALUES (?1, ?2, ?3)",
                    params![contact.id.as_str(), contact.tenant, json],
                )?;
                for (name, values) in &attributes {
                    for value in values {
                        tx.execute(
                            "INSERT INTO contact_attributes (contact_id, name, value) \
                             VALUES (?1, ?2, ?3)",
                            params![contact.id.as_str(), name, value],
                        )?;
                    }
                }
            }
            tx.commit()
        })?;
        for source in DataSource::ALL {
            let Some(db) = self.db(source) else { continue };
            let mut documents = Vec::new();
            for contact in &dataset.contacts {
                let list = match source {
                    DataSource::Main => &contact.interactions.main,
                    DataSource::Archive => &contact.interactions.archive,
                };
                for interaction in list {
                    for (position, attachment) in interaction.attachments.iter().enumerate() {
                        let (path, owned) = match (&attachment.base64, &attachment.file) {
                            (Some(text), _) => {
                                let bytes = base64::engine::general_purpose::STANDARD
                                    .decode(text.trim())
                                    .map_err(|_| {
                                        StoreError::Dataset(format!(
                                            "attachment {} is not valid base64",
                                            attachment.id
                                        ))
                                    })?;
                                let path = self.documents.join(attachment.id.as_str());
                                crate::durable::write_private(&path, &bytes).map_err(|source| {
                                    StoreError::Io { path: path.clone(), source }
                                })?;
                                (path, true)
                            }
                            (None, Some(file)) => {
                                let path = relative_file(dataset_path, file).ok_or_else(|| {
                                    StoreError::Dataset(format!(
                                        "attachment {}: bad file path",
                                        attachment.id
                                    ))
                                })?;
                                let path = std::fs::canonicalize(&path)
                                    .map_err(|source| StoreError::Io { path, source })?;
                                (path, false)
                            }
                            (None, None) => {
                                return Err(StoreError::Dataset(format!(
                                    "attachment {} has no bytes",
                                    attachment.id
                                )));
                            }
                        };
                        let size = std::fs::metadata(&path)
                            .map_err(|source| StoreError::Io { path: path.clone(), source })?
                            .len();
                        documents.push((
                            interaction.id.clone(),
                            position,
                            attachment,
                            path,
                            size,
                            owned,
                        ));
                    }
                }
            }
            db.run(|conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                for contact in &dataset.contacts {
                    let list = match source {
                        DataSource::Main => &contact.interactions.main,
                        DataSource::Archive => &contact.interactions.archive,
                    };
                    for interaction in list {
                        insert_interaction(&tx, contact.id.as_str(), interaction)?;
                    }
                }
                for (interaction, position, attachment, path, size, owned) in &documents {
                    tx.execute(
                        "INSERT INTO documents (id, interaction_id, position, name, mime_type, \
                         size, path, owned) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            attachment.id.as_str(),
                            interaction.as_str(),
                            i64::try_from(*position).unwrap_or(i64::MAX),
                            attachment.name,
                            attachment.mime_type,
                            i64::try_from(*size).unwrap_or(i64::MAX),
                            path.to_string_lossy(),
                            owned
                        ],
                    )?;
                }
                tx.commit()
            })?;
        }
        self.services.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for contact in &dataset.contacts {
                if let Some(profile) = &contact.profile {
                    let json = serde_json::to_string(profile).unwrap_or_else(|_| "{}".to_owned());
                    tx.execute(
                        "INSERT INTO profiles (id, fields) VALUES (?1, ?2)",
                        params![contact.id.as_str(), json],
                    )?;
                }
                for callback in &contact.callbacks {
                    tx.execute(
                        "INSERT INTO callbacks (id, service_name, state, desired_time, \
                         customer_number) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            callback.id.as_str(),
                            callback.service,
                            callback.state,
                            callback.desired_time.map(|t| t.to_string()),
                            callback.phone_number
                        ],
                    )?;
                }
            }
            let services = dataset
                .contacts
                .iter()
                .flat_map(|c| c.services.iter().map(move |s| (Some(c.id.as_str()), s)))
                .chain(dataset.anonymous_services.iter().map(|s| (None, s)));
            for (customer, service) in services {
                tx.execute(
                    "INSERT INTO cs_services (id, customer_id, contact_key, fields, states, \
                     tasks) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        service.id,
                        customer,
                        service.contact_key,
                        to_text(&service.fields),
                        to_text(&service.states),
                        to_text(&service.tasks)
                    ],
                )?;
            }
            tx.commit()
        })?;
        Ok(())
    }

    /// Contacts of `tenant` having every `(name, value)` pair.
    pub(crate) fn identify(
        &self,
        tenant: u32,
        fields: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, StoreError> {
        self.main.run(|conn| {
            let mut matches: Option<BTreeSet<String>> = None;
            if fields.is_empty() {
                return Ok(Vec::new());
            }
            let mut statement = conn.prepare_cached(
                "SELECT DISTINCT a.contact_id FROM contact_attributes a \
                 JOIN contacts c ON c.id = a.contact_id \
                 WHERE c.tenant = ?1 AND a.name = ?2 AND a.value = ?3",
            )?;
            for (name, value) in fields {
                let ids = statement
                    .query_map(params![tenant, name, value], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<BTreeSet<_>>>()?;
                matches = Some(match matches {
                    None => ids,
                    Some(previous) => previous.intersection(&ids).cloned().collect(),
                });
            }
            Ok(matches.unwrap_or_default().into_iter().collect())
        })
    }

    /// The attribute names the contacts have: the simulator's contact attribute schema.
    ///
    /// Read on every `IdentifyContact`, so it must not cost a pass over every attribute row
    /// (`SELECT DISTINCT name` walks the whole index: with N contacts, planning N of them cost
    /// N²). It hops from one name to the next on the `(name, value)` index instead: one seek per
    /// distinct name.
    pub(crate) fn attribute_names(&self) -> Result<BTreeSet<String>, StoreError> {
        self.main.run(|conn| {
            conn.prepare_cached(ATTRIBUTE_NAMES)?
                .query_map([], |row| row.get::<_, String>(0))?
                .collect()
        })
    }

    /// Creates a contact of `tenant` with these attributes (what `IdentifyContact` does when
    /// nothing matches and `CreateContact` is not `"false"`); answers its id.
    pub(crate) fn create_contact(
        &self,
        tenant: u32,
        fields: &BTreeMap<String, String>,
    ) -> Result<String, StoreError> {
        self.main.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let count: i64 = tx.query_row("SELECT COUNT(*) FROM contacts", [], |row| row.get(0))?;
            let mut n = count;
            let id = loop {
                // 16 alphanumeric characters, like UCS's ids; never one the dataset uses.
                let id = format!("SIMNEW{n:010}");
                let taken: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM contacts WHERE id = ?1",
                    params![id],
                    |row| row.get(0),
                )?;
                if taken == 0 {
                    break id;
                }
                n += 1;
            };
            let attributes: BTreeMap<&String, Vec<&String>> =
                fields.iter().map(|(k, v)| (k, vec![v])).collect();
            let json = serde_json::to_string(&attributes).unwrap_or_else(|_| "{}".to_owned());
            tx.execute(
                "INSERT INTO contacts (id, tenant, attributes) VALUES (?1, ?2, ?3)",
                params![id, tenant, json],
            )?;
            for (name, value) in fields {
                tx.execute(
                    "INSERT INTO contact_attributes (contact_id, name, value) VALUES (?1, ?2, ?3)",
                    params![id, name, value],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
    }

    /// Deletes one interaction and its documents wherever it is; `false` if there is none.
    pub(crate) fn delete_interaction(&self, interaction: &str) -> Result<bool, StoreError> {
        let mut owned_files = Vec::new();
        let mut deleted = false;
        for source in DataSource::ALL {
            let Some(db) = self.db(source) else { continue };
            let (files, n) = db.run(|conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let files = tx
                    .prepare("SELECT path FROM documents WHERE interaction_id = ?1 AND owned = 1")?
                    .query_map(params![interaction], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                tx.execute(
                    "DELETE FROM documents WHERE interaction_id = ?1",
                    params![interaction],
                )?;
                let n =
                    tx.execute("DELETE FROM interactions WHERE id = ?1", params![interaction])?;
                tx.commit()?;
                Ok((files, n))
            })?;
            deleted |= n > 0;
            owned_files.extend(files);
        }
        for file in owned_files {
            let _ = std::fs::remove_file(file);
        }
        Ok(deleted)
    }

    /// A contact's attributes.
    pub(crate) fn contact(&self, id: &str) -> Result<Option<AttributesResult>, StoreError> {
        self.main.run(|conn| {
            conn.prepare_cached("SELECT tenant, attributes FROM contacts WHERE id = ?1")?
                .query_row(params![id], |row| {
                    let attributes: String = row.get(1)?;
                    Ok(AttributesResult {
                        contact_id: id.to_owned(),
                        tenant_id: row.get(0)?,
                        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                    })
                })
                .optional()
        })
    }

    /// Whether the contact exists.
    pub(crate) fn contact_exists(&self, id: &str) -> Result<bool, StoreError> {
        self.main.run(|conn| {
            conn.prepare_cached("SELECT 1 FROM contacts WHERE id = ?1")?.exists(params![id])
        })
    }

    /// A page of a contact's interactions in `source` (which must exist), and the total.
    pub(crate) fn interactions(
        &self,
        source: DataSource,
        contact: &str,
        offset: u32,
        size: u32,
    ) -> Result<(Vec<WireInteraction>, u32), StoreError> {
        let Some(db) = self.db(source) else { return Ok((Vec::new(), 0)) };
        db.run(|conn| {
            let total: u32 = conn
                .prepare_cached("SELECT COUNT(*) FROM interactions WHERE contact_id = ?1")?
                .query_row(params![contact], |row| row.get(0))?;
            let mut statement = conn.prepare_cached(
                "SELECT i.id, i.media_type, i.status, i.workbin, i.start_date, i.end_date, \
                 i.modified, (SELECT COUNT(*) FROM documents d WHERE d.interaction_id = i.id) \
                 FROM interactions i WHERE i.contact_id = ?1 \
                 ORDER BY i.start_date, i.id LIMIT ?2 OFFSET ?3",
            )?;
            let page = statement
                .query_map(params![contact, size, offset], |row| {
                    Ok(WireInteraction {
                        id: row.get(0)?,
                        media_type_id: row.get(1)?,
                        type_id: None,
                        status: status_from_name(&row.get::<_, String>(2)?),
                        workbin: row.get(3)?,
                        start_date: timestamp(row.get(4)?),
                        end_date: timestamp(row.get(5)?),
                        modified_date: timestamp(row.get(6)?).unwrap_or(Timestamp::UNIX_EPOCH),
                        attachment_count: row.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((page, total))
        })
    }

    /// An interaction's content, if it is in `source`.
    pub(crate) fn content(
        &self,
        source: DataSource,
        interaction: &str,
    ) -> Result<Option<ContentResult>, StoreError> {
        let Some(db) = self.db(source) else { return Ok(None) };
        db.run(|conn| {
            let found = conn
                .prepare_cached("SELECT subject, text, structured FROM interactions WHERE id = ?1")?
                .query_row(params![interaction], |row| {
                    Ok((
                        row.get::<_, Option<String>>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            let Some((subject, text, structured)) = found else { return Ok(None) };
            let attachments = conn
                .prepare_cached(
                    "SELECT id, name, mime_type, size FROM documents \
                     WHERE interaction_id = ?1 ORDER BY position",
                )?
                .query_map(params![interaction], |row| {
                    Ok(WireAttachment {
                        document_id: row.get(0)?,
                        the_name: row.get(1)?,
                        mime_type: row.get(2)?,
                        the_size: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(ContentResult {
                id: interaction.to_owned(),
                subject,
                text,
                structured_fields: serde_json::from_str(&structured).unwrap_or_default(),
                attachments,
            }))
        })
    }

    /// A document's file, if it is in `source`.
    pub(crate) fn document(
        &self,
        source: DataSource,
        id: &str,
    ) -> Result<Option<DocumentFile>, StoreError> {
        let Some(db) = self.db(source) else { return Ok(None) };
        db.run(|conn| {
            conn.prepare_cached("SELECT path, size, name, mime_type FROM documents WHERE id = ?1")?
                .query_row(params![id], |row| {
                    Ok(DocumentFile {
                        path: PathBuf::from(row.get::<_, String>(0)?),
                        size: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                        name: row.get(2)?,
                        mime_type: row.get(3)?,
                    })
                })
                .optional()
        })
    }

    /// Stops an interaction wherever it is; `false` if there is none.
    pub(crate) fn stop(&self, interaction: &str, reason: &str) -> Result<bool, StoreError> {
        let now = Timestamp::now().to_string();
        for source in DataSource::ALL {
            let Some(db) = self.db(source) else { continue };
            let changed = db.run(|conn| {
                // Stopping a stopped interaction succeeds and changes nothing (idempotent).
                let exists = conn
                    .prepare_cached("SELECT status, workbin FROM interactions WHERE id = ?1")?
                    .query_row(params![interaction], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
                    })
                    .optional()?;
                match exists {
                    None => Ok(false),
                    Some((status, None)) if status == status_name(InteractionStatus::Stopped) => {
                        Ok(true)
                    }
                    Some(_) => {
                        conn.execute(
                            "UPDATE interactions SET status = 'Stopped', workbin = NULL, \
                             modified = ?2, stop_reason = ?3 WHERE id = ?1",
                            params![interaction, now, reason],
                        )?;
                        Ok(true)
                    }
                }
            })?;
            if changed {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A delete of a contact that stops half way (the `halfway` fault): the first half of its
    /// interactions (by id, rounded up) are deleted with their documents, the rest and the
    /// contact stay. `false` if there was no such contact.
    pub(crate) fn delete_contact_halfway(&self, id: &str) -> Result<bool, StoreError> {
        if !self.contact_exists(id)? {
            return Ok(false);
        }
        let mut ids = std::collections::BTreeSet::new();
        for source in DataSource::ALL {
            let Some(db) = self.db(source) else { continue };
            let found = db.run(|conn| {
                conn.prepare("SELECT id FROM interactions WHERE contact_id = ?1")?
                    .query_map(params![id], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })?;
            ids.extend(found);
        }
        let half = ids.len().div_ceil(2);
        for interaction in ids.iter().take(half) {
            self.delete_interaction(interaction)?;
        }
        Ok(true)
    }

    /// Deletes a contact and its interactions and documents in every source; `false` if there
    /// was no such contact.
    pub(crate) fn delete_contact(&self, id: &str) -> Result<bool, StoreError> {
        if !self.contact_exists(id)? {
            return Ok(false);
        }
        // Interactions first, the contact last: a delete interrupted half-way leaves a contact
        // that a second delete finishes.
        let mut owned_files = Vec::new();
        for source in DataSource::ALL {
            let Some(db) = self.db(source) else { continue };
            let files = db.run(|conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let files = tx
                    .prepare(
                        "SELECT d.path FROM documents d JOIN interactions i \
                         ON i.id = d.interaction_id WHERE i.contact_id = ?1 AND d.owned = 1",
                    )?
                    .query_map(params![id], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                tx.execute(
                    "DELETE FROM documents WHERE interaction_id IN \
                     (SELECT id FROM interactions WHERE contact_id = ?1)",
                    params![id],
                )?;
                tx.execute("DELETE FROM interactions WHERE contact_id = ?1", params![id])?;
                tx.commit()?;
                Ok(files)
            })?;
            owned_files.extend(files);
        }
        self.main.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM contact_attributes WHERE contact_id = ?1", params![id])?;
            tx.execute("DELETE FROM contacts WHERE id = ?1", params![id])?;
            tx.commit()
        })?;
        for file in owned_files {
            // Best effort: a file left behind is unreachable (its row is gone).
            let _ = std::fs::remove_file(file);
        }
        Ok(true)
    }

    /// A Context Services profile.
    pub(crate) fn profile(
        &self,
        id: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, StoreError> {
        self.services.run(|conn| {
            conn.prepare_cached("SELECT fields FROM profiles WHERE id = ?1")?
                .query_row(params![id], |row| row.get::<_, String>(0))
                .optional()
                .map(|found| found.map(|text| serde_json::from_str(&text).unwrap_or_default()))
        })
    }

    /// Deletes a profile; `false` if there was none.
    pub(crate) fn delete_profile(&self, id: &str) -> Result<bool, StoreError> {
        self.services
            .run(|conn| conn.execute("DELETE FROM profiles WHERE id = ?1", params![id]))
            .map(|n| n > 0)
    }

    /// The callbacks on `number` (exactly as stored), in `service` or in every service.
    pub(crate) fn callbacks(
        &self,
        number: &str,
        service: Option<&str>,
    ) -> Result<Vec<WireCallback>, StoreError> {
        self.services.run(|conn| {
            conn.prepare_cached(
                "SELECT id, service_name, state, desired_time, customer_number FROM callbacks \
                 WHERE customer_number = ?1 AND (?2 IS NULL OR service_name = ?2) ORDER BY id",
            )?
            .query_map(params![number, service], |row| {
                Ok(WireCallback {
                    id: row.get(0)?,
                    service_name: row.get(1)?,
                    state: row.get(2)?,
                    desired_time: timestamp(row.get(3)?).map(|t| t.to_string()),
                    customer_number: row.get(4)?,
                })
            })?
            .collect()
        })
    }

    /// Cancels (removes) a callback of `service`; `false` if that service has none by this id.
    pub(crate) fn cancel_callback(&self, service: &str, id: &str) -> Result<bool, StoreError> {
        self.services
            .run(|conn| {
                conn.execute(
                    "DELETE FROM callbacks WHERE id = ?1 AND service_name = ?2",
                    params![id, service],
                )
            })
            .map(|n| n > 0)
    }

    /// The services of a customer (`customer: Some`) or of a contact key (`key: Some`).
    pub(crate) fn cs_services(
        &self,
        customer: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<StoredService>, StoreError> {
        self.services.run(|conn| {
            conn.prepare_cached(
                "SELECT id, customer_id, contact_key, fields, states, tasks FROM cs_services \
                 WHERE (?1 IS NOT NULL AND customer_id = ?1) OR (?2 IS NOT NULL AND contact_key = ?2) \
                 ORDER BY id",
            )?
            .query_map(params![customer, key], stored_service)?
            .collect()
        })
    }

    /// One service by id.
    pub(crate) fn cs_service(&self, id: &str) -> Result<Option<StoredService>, StoreError> {
        self.services.run(|conn| {
            conn.prepare_cached(
                "SELECT id, customer_id, contact_key, fields, states, tasks FROM cs_services \
                 WHERE id = ?1",
            )?
            .query_row(params![id], stored_service)
            .optional()
        })
    }

    /// Deletes a service with its states and tasks; `false` if there was none.
    pub(crate) fn delete_cs_service(&self, id: &str) -> Result<bool, StoreError> {
        self.services
            .run(|conn| conn.execute("DELETE FROM cs_services WHERE id = ?1", params![id]))
            .map(|n| n > 0)
    }
}

fn to_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn stored_service(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredService> {
    let id: String = row.get(0)?;
    let customer: Option<String> = row.get(1)?;
    let key: Option<String> = row.get(2)?;
    let mut resource: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.get::<_, String>(3)?).unwrap_or_default();
    resource.insert("service_id".to_owned(), id.into());
    if let Some(customer) = customer {
        resource.insert("customer_id".to_owned(), customer.into());
    }
    if let Some(key) = key {
        resource.insert("contact_key".to_owned(), key.into());
    }
    Ok(StoredService {
        resource,
        states: serde_json::from_str(&row.get::<_, String>(4)?).unwrap_or_default(),
        tasks: serde_json::from_str(&row.get::<_, String>(5)?).unwrap_or_default(),
    })
}

fn insert_interaction(
    tx: &rusqlite::Transaction<'_>,
    contact: &str,
    interaction: &DatasetInteraction,
) -> rusqlite::Result<()> {
    let modified = interaction
        .modified
        .or(interaction.end_date)
        .or(interaction.start_date)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let structured =
        serde_json::to_string(&interaction.structured).unwrap_or_else(|_| "{}".to_owned());
    tx.execute(
        "INSERT INTO interactions (id, contact_id, media_type, status, workbin, start_date, \
         end_date, modified, subject, text, structured) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            interaction.id.as_str(),
            contact,
            interaction.media_type,
            status_name(interaction.status),
            interaction.workbin,
            interaction.start_date.map(|t| t.to_string()),
            interaction.end_date.map(|t| t.to_string()),
            modified.to_string(),
            interaction.subject,
            interaction.text,
            structured
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `statement`, one detail per step.
    fn query_plan(conn: &Connection, statement: &str) -> Vec<String> {
        let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {statement}")).unwrap();
        plan.query_map([], |row| row.get::<_, String>(3)).unwrap().map(Result::unwrap).collect()
    }

    /// A contact's rows are found by index, never by scanning the table: a scan per contact
    /// makes a batch of N contacts cost N² in the simulator (a delete of the 100,000th contact
    /// would read every attribute row of the other 99,999).
    #[test]
    fn a_contact_s_rows_are_found_by_index_not_by_scanning_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("main.db"), INTERACTIONS_SCHEMA).unwrap();
        db.run(|conn| {
            for statement in [
                "DELETE FROM contact_attributes WHERE contact_id = 'x'",
                "SELECT id FROM interactions WHERE contact_id = 'x'",
                "DELETE FROM interactions WHERE contact_id = 'x'",
                "SELECT path FROM documents WHERE interaction_id = 'x' AND owned = 1",
                "SELECT tenant, attributes FROM contacts WHERE id = 'x'",
            ] {
                let plan = query_plan(conn, statement);
                assert!(plan.iter().all(|step| !step.starts_with("SCAN")), "{statement}: {plan:?}");
            }
            Ok(())
        })
        .unwrap();
    }

    /// `IdentifyContact` reads the attribute names each time: they come from seeks on the
    /// index, not a pass over every attribute row, and they are the distinct names.
    #[test]
    fn the_attribute_names_are_read_without_a_pass_over_every_attribute() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("main.db"), INTERACTIONS_SCHEMA).unwrap();
        db.run(|conn| {
            let plan = query_plan(conn, ATTRIBUTE_NAMES);
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN contact_attributes")),
                "{plan:?}"
            );
            for (contact, name) in
                [("a", "EmailAddress"), ("a", "FirstName"), ("b", "EmailAddress")]
            {
                conn.execute(
                    "INSERT INTO contact_attributes (contact_id, name, value) VALUES (?1, ?2, 'v')",
                    params![contact, name],
                )?;
            }
            let names: Vec<String> = conn
                .prepare(ATTRIBUTE_NAMES)?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            assert_eq!(names, ["EmailAddress", "FirstName"]);
            Ok(())
        })
        .unwrap();
    }
}
