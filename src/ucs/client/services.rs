//! Context Services (profiles, services, states, tasks) and GMS callbacks over HTTP: inherent
//! methods of [`RestTransport`] that its [`Transport`](super::Transport) implementation
//! delegates to, each one attempt (retries, limits and the rate limit are the
//! [`Connector`](super::Connector)'s). The mapping is in [`wire::context_services`] and
//! [`wire::gms`].
//!
//! Both APIs answer errors as `{"message","exception"}`; the exception's class name (without
//! its package) becomes the error's code, the message is never copied (it may quote a key).
//! Phone numbers are sent (they are the keys GMS and Context Services look records up by) but
//! never appear in an error, a log line or a subject: the subject is always the contact id.

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::rest::{
    RestTransport, callback_state, has_content_type, malformed, read_limited, send_error,
};
use crate::ucs::wire::context_services::{self as cs, CsError};
use crate::ucs::wire::{self, Operation, StatusMeaning, gms};
use crate::ucs::{
    Callback, CallbackId, Contact, ContactId, CsService, DeleteOutcome, ErrorKind, Profile,
    ProtocolFault, ServiceId, UcsError,
};

/// Percent-encodes a path segment (a contact key such as `+44 20 7946 0958`); `.` too, so no
/// key can become `.` or `..`.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl RestTransport {
    /// One attempt of a Context Services or GMS call: the body of a 2xx answer, or a typed
    /// error read from the `{"message","exception"}` body. A 400 whose exception says "not
    /// found" is [`ErrorKind::NotFound`], as `DeleteServiceByID` documents it.
    async fn cs_once(
        &self,
        operation: Operation,
        subject: Option<&str>,
        request: RequestBuilder,
    ) -> Result<(Vec<u8>, bool), UcsError> {
        let response =
            request.send().await.map_err(|error| send_error(operation, subject, &error))?;
        let status = response.status().as_u16();
        tracing::debug!(operation = %operation, subject = subject.unwrap_or(""), status, "call answered");
        let meaning = wire::status_meaning(status);
        if meaning == StatusMeaning::Success {
            let json = has_content_type(&response, wire::JSON);
            let body = read_limited(operation, response, self.config.max_body_bytes)
                .await
                .map_err(|e| e.with_subject(subject))?;
            return Ok((body, json));
        }
        let body = read_limited(operation, response, 64 * 1024).await.ok();
        let error = body.and_then(|body| serde_json::from_slice::<CsError>(&body).ok());
        let not_found = meaning == StatusMeaning::NotFound
            || (status == 400 && error.as_ref().is_some_and(CsError::is_not_found));
        let (kind, text) = if not_found {
            (ErrorKind::NotFound, "not found")
        } else if meaning == StatusMeaning::Transient {
            (ErrorKind::Transient, "server temporarily unavailable")
        } else {
            (ErrorKind::Permanent, "request refused")
        };
        Err(UcsError::new(operation, kind, text)
            .with_status(status)
            .with_code(error.as_ref().map(CsError::short_exception).filter(|c| !c.is_empty()))
            .with_subject(subject))
    }

    /// A JSON answer (one attempt).
    async fn cs_json<T: DeserializeOwned>(
        &self,
        operation: Operation,
        subject: Option<&str>,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<T, UcsError> {
        let request = self.request(operation, Method::GET, url).query(query);
        let (body, json) = self.cs_once(operation, subject, request).await?;
        if !json {
            return Err(UcsError::protocol(operation, ProtocolFault::WrongContentType)
                .with_subject(subject));
        }
        serde_json::from_slice(&body).map_err(|_| malformed(operation).with_subject(subject))
    }

    /// A delete (one attempt; deleting twice is harmless): not found is
    /// [`DeleteOutcome::AlreadyAbsent`].
    async fn cs_delete(
        &self,
        operation: Operation,
        subject: &str,
        url: &str,
    ) -> Result<DeleteOutcome, UcsError> {
        let request = self.request(operation, Method::DELETE, url);
        match self.cs_once(operation, Some(subject), request).await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(error) if error.kind == ErrorKind::NotFound => Ok(DeleteOutcome::AlreadyAbsent),
            Err(error) => Err(error),
        }
    }

    fn profile_url(&self, contact: &ContactId) -> String {
        format!("{}{}/{contact}", self.context_services, cs::PROFILES)
    }

    /// `QueryCustomerProfile`; `None` when there is none (404).
    pub(super) async fn cs_get_profile(
        &self,
        contact: &ContactId,
    ) -> Result<Option<Profile>, UcsError> {
        let operation = Operation::GetProfile;
        let subject = Some(contact.as_str());
        let url = self.profile_url(contact);
        let mut fields: Map<String, Value> = match self.cs_json(operation, subject, &url, &[]).await
        {
            Ok(fields) => fields,
            Err(error) if error.kind == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        match fields.remove(cs::PROFILE_ID_FIELD) {
            Some(Value::String(id)) if id == contact.as_str() => {}
            _ => return Err(malformed(operation).with_subject(subject)),
        }
        Ok(Some(Profile { id: contact.clone(), fields }))
    }

    /// `DeleteCustomerProfile`.
    pub(super) async fn cs_delete_profile(
        &self,
        contact: &ContactId,
    ) -> Result<DeleteOutcome, UcsError> {
        let url = self.profile_url(contact);
        self.cs_delete(Operation::DeleteProfile, contact.as_str(), &url).await
    }

    /// Every state and task of each service listed (`QueryStates`, `QueryTasks`).
    async fn with_states_and_tasks(
        &self,
        subject: &str,
        services: Vec<Value>,
        anonymous: bool,
        operation: Operation,
    ) -> Result<Vec<CsService>, UcsError> {
        let mut out = Vec::with_capacity(services.len());
        for value in services {
            let Value::Object(service) = value else {
                return Err(malformed(operation).with_subject(Some(subject)));
            };
            let id = service
                .get(cs::SERVICE_ID_FIELD)
                .and_then(cs::service_id_text)
                .and_then(|text| ServiceId::new(&text).ok())
                .ok_or_else(|| malformed(operation).with_subject(Some(subject)))?;
            let base = format!("{}{}/{id}", self.gms, cs::SERVICES);
            let states: Vec<Value> = self
                .cs_json(
                    Operation::GetServiceStates,
                    Some(id.as_str()),
                    &format!("{base}/{}", cs::STATES_SEGMENT),
                    &[],
                )
                .await?;
            let tasks: Vec<Value> = self
                .cs_json(
                    Operation::GetServiceTasks,
                    Some(id.as_str()),
                    &format!("{base}/{}", cs::TASKS_SEGMENT),
                    &[],
                )
                .await?;
            out.push(CsService { id, anonymous, service, states, tasks });
        }
        Ok(out)
    }

    /// `QueryServices` for a customer, with each service's states and tasks. A customer
    /// Context Services does not know (404) has no services.
    pub(super) async fn cs_list_services(
        &self,
        contact: &ContactId,
    ) -> Result<Vec<CsService>, UcsError> {
        let operation = Operation::ListServices;
        let subject = Some(contact.as_str());
        let url = format!("{}{}/{contact}/{}", self.gms, cs::CUSTOMERS, cs::SERVICES_SEGMENT);
        let services: Vec<Value> = match self.cs_json(operation, subject, &url, &[]).await {
            Ok(services) => services,
            Err(error) if error.kind == ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        self.with_states_and_tasks(contact.as_str(), services, false, operation).await
    }

    /// `QueryServices` (anonymous) by each of the contact's phone numbers, with each service's
    /// states and tasks; a service found under two numbers is listed once.
    pub(super) async fn cs_list_anonymous_services(
        &self,
        contact: &Contact,
    ) -> Result<Vec<CsService>, UcsError> {
        let operation = Operation::ListAnonymousServices;
        let subject = Some(contact.id.as_str());
        let mut found: Vec<CsService> = Vec::new();
        for key in gms::phone_numbers(&contact.attributes) {
            let url = format!("{}{}/{}", self.gms, cs::ANONYMOUS_SERVICES, segment(&key));
            let services: Vec<Value> = match self.cs_json(operation, subject, &url, &[]).await {
                Ok(services) => services,
                Err(error) if error.kind == ErrorKind::NotFound => Vec::new(),
                Err(error) => return Err(error),
            };
            for service in
                self.with_states_and_tasks(contact.id.as_str(), services, true, operation).await?
            {
                if !found.iter().any(|s| s.id == service.id) {
                    found.push(service);
                }
            }
        }
        Ok(found)
    }

    /// `DeleteServiceByID`: the service with its states and tasks.
    pub(super) async fn cs_delete_service(
        &self,
        service: &ServiceId,
    ) -> Result<DeleteOutcome, UcsError> {
        let url = format!("{}{}/{service}", self.gms, cs::SERVICES);
        self.cs_delete(Operation::DeleteService, service.as_str(), &url).await
    }

    /// The callbacks on each of the contact's phone numbers (and configured lookup keys),
    /// across every callback service; a callback found by two queries is listed once.
    pub(super) async fn gms_list_callbacks(
        &self,
        contact: &Contact,
    ) -> Result<Vec<Callback>, UcsError> {
        let operation = Operation::ListCallbacks;
        let subject = Some(contact.id.as_str());
        let url = format!("{}{}", self.gms, gms::CALLBACKS);
        let mut found: Vec<Callback> = Vec::new();
        for (property, value) in gms::lookups(&contact.attributes, &self.config.gms_lookup_keys) {
            let result: gms::CallbacksResult = self
                .cs_json(operation, subject, &url, &[(property.as_str(), value.as_str())])
                .await?;
            for record in result.into_vec() {
                let id = CallbackId::new(&record.id)
                    .map_err(|_| malformed(operation).with_subject(subject))?;
                if !gms::is_service_name(&record.service_name) {
                    return Err(malformed(operation).with_subject(subject));
                }
                if found.iter().any(|c| c.id == id && c.service == record.service_name) {
                    continue;
                }
                found.push(Callback {
                    id,
                    service: record.service_name,
                    state: callback_state(&record.state),
                    desired_time: record.desired_time.and_then(|t| t.parse().ok()),
                    phone_number: record.customer_number,
                });
            }
        }
        found.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
        Ok(found)
    }

    /// Cancels a callback in its own service: `DELETE .../callback/{_service_name}/{_id}`.
    pub(super) async fn gms_cancel_callback(
        &self,
        callback: &Callback,
    ) -> Result<DeleteOutcome, UcsError> {
        let operation = Operation::CancelCallback;
        if !gms::is_service_name(&callback.service) {
            return Err(UcsError::new(operation, ErrorKind::Permanent, "invalid service name")
                .with_subject(Some(callback.id.as_str())));
        }
        let url = format!("{}{}/{}/{}", self.gms, gms::CALLBACKS, callback.service, callback.id);
        self.cs_delete(operation, callback.id.as_str(), &url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_keys_are_percent_encoded_as_one_segment() {
        assert_eq!(segment("+44 20 7946 0958"), "%2B44%2020%207946%200958");
        assert_eq!(segment("../x"), "%2E%2E%2Fx");
    }
}
