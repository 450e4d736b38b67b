//! The few calls of MLflow's REST API (`/api/2.0/mlflow/...`) a run needs, over a blocking HTTP
//! client with short timeouts.

use std::time::Duration;

use serde_json::{Value, json};

/// What an MLflow call met: the server could not be reached, or it answered an error.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// No answer: refused, timed out, a broken connection.
    #[error("MLflow at {uri} did not answer: {message}")]
    Unreachable {
        /// The server.
        uri: String,
        /// The transport's error.
        message: String,
    },
    /// An answer that is an error.
    #[error("MLflow at {uri} answered {endpoint} with {status}: {message}")]
    Refused {
        /// The server.
        uri: String,
        /// The call.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code` and `message`, or the body.
        message: String,
        /// MLflow's `error_code`, when it gave one.
        code: Option<String>,
    },
    /// An `https://` server, and no TLS in this build.
    #[error("mlflow.uri {0}: https needs danling built with its `tls` feature")]
    NoTls(String),
}

/// A metric point as `runs/log-batch` takes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metric {
    /// `{split}/{name}`.
    pub key: String,
    /// The value.
    pub value: f64,
    /// Unix time in milliseconds.
    pub timestamp: i64,
    /// The optimizer step.
    pub step: i64,
}

/// The most metrics, params and tags one `runs/log-batch` takes (MLflow's limits).
pub const MAX_METRICS: usize = 1000;
/// See [`MAX_METRICS`].
pub const MAX_PARAMS: usize = 100;
/// The longest param value MLflow 2.x and 3.x keep.
pub const MAX_PARAM_VALUE: usize = 6000;

/// A client of one MLflow server.
#[derive(Clone)]
pub struct Client {
    uri: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("uri", &self.uri).finish()
    }
}

impl Client {
    /// A client of the server at `uri` (`http://host:port`, with an optional path prefix).
    pub fn new(uri: &str) -> Result<Self, MlflowError> {
        let uri = uri.trim_end_matches('/').to_owned();
        if uri.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(MlflowError::NoTls(uri));
        }
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .user_agent(concat!("danling/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            uri,
            agent: ureq::Agent::new_with_config(config),
        })
    }

    /// The server's address.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.uri)
    }

    fn answer(
        &self,
        endpoint: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, MlflowError> {
        let mut response = response.map_err(|e| MlflowError::Unreachable {
            uri: self.uri.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let code = value["error_code"].as_str().map(str::to_owned);
        let message = match (&code, value["message"].as_str()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => body.chars().take(300).collect(),
        };
        Err(MlflowError::Refused {
            uri: self.uri.clone(),
            endpoint: endpoint.to_owned(),
            status,
            message,
            code,
        })
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let response = self.agent.post(&self.url(endpoint)).send_json(body);
        self.answer(endpoint, response)
    }

    /// The id of the experiment `name`, created when there is none.
    pub fn experiment(&self, name: &str) -> Result<String, MlflowError> {
        let found = self.answer(
            "experiments/get-by-name",
            self.agent
                .get(&self.url("experiments/get-by-name"))
                .query("experiment_name", name)
                .call(),
        );
        match found {
            Ok(value) => {
                return id_of(
                    &value["experiment"]["experiment_id"],
                    "experiments/get-by-name",
                    self,
                );
            }
            Err(MlflowError::Refused { code: Some(code), .. }) if code == "RESOURCE_DOES_NOT_EXIST" => {}
            Err(error) => return Err(error),
        }
        match self.post("experiments/create", &json!({"name": name})) {
            Ok(value) => id_of(&value["experiment_id"], "experiments/create", self),
            // Created by another run since.
            Err(MlflowError::Refused { code: Some(code), .. }) if code == "RESOURCE_ALREADY_EXISTS" => {
                let value = self.answer(
                    "experiments/get-by-name",
                    self.agent
                        .get(&self.url("experiments/get-by-name"))
                        .query("experiment_name", name)
                        .call(),
                )?;
                id_of(
                    &value["experiment"]["experiment_id"],
                    "experiments/get-by-name",
                    self,
                )
            }
            Err(error) => Err(error),
        }
    }

    /// Creates a run named `name` in `experiment` with `tags`; returns its id and artifact URI.
    pub fn create_run(
        &self,
        experiment: &str,
        name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<(String, String), MlflowError> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        let value = self.post(
            "runs/create",
            &json!({"experiment_id": experiment, "run_name": name, "start_time": start_ms, "tags": tags}),
        )?;
        let info = &value["run"]["info"];
        let id = id_of(&info["run_id"], "runs/create", self)?;
        Ok((id, info["artifact_uri"].as_str().unwrap_or_default().to_owned()))
    }

    /// Logs metrics, params and tags to `run` (each within MLflow's limits per call).
    pub fn log_batch(
        &self,
        run: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let pairs = |list: &[(String, String)]| -> Vec<Value> {
            list.iter().map(|(k, v)| json!({"key": k, "value": v})).collect()
        };
        self.post(
            "runs/log-batch",
            &json!({"run_id": run, "metrics": metrics, "params": pairs(params), "tags": pairs(tags)}),
        )?;
        Ok(())
    }

    /// Whether `run` holds `metric` (its key, step and timestamp): whether a batch whose answer
    /// never came was stored.
    pub fn holds(&self, run: &str, metric: &Metric) -> Result<bool, MlflowError> {
        let endpoint = "metrics/get-history-bulk-interval";
        let step = metric.step.to_string();
        let value = self.answer(
            endpoint,
            self.agent
                .get(&self.url(endpoint))
                .query("run_ids", run)
                .query("metric_key", &metric.key)
                .query("start_step", &step)
                .query("end_step", &step)
                .query("max_results", "1000")
                .call(),
        )?;
        Ok(value["metrics"].as_array().is_some_and(|points| {
            points.iter().any(|point| {
                point["step"].as_i64() == Some(metric.step)
                    && point["timestamp"].as_i64() == Some(metric.timestamp)
            })
        }))
    }

    /// Sets `run`'s status (`RUNNING`, `FINISHED`, `FAILED`, `KILLED`), with its end time when it
    /// ended.
    pub fn update_run(&self, run: &str, status: &str, end_ms: Option<i64>) -> Result<(), MlflowError> {
        let mut body = json!({"run_id": run, "status": status});
        if let Some(end) = end_ms {
            body["end_time"] = json!(end);
        }
        self.post("runs/update", &body)?;
        Ok(())
    }

    /// Uploads `bytes` as the artifact `name` of a run whose artifact URI is `artifact_uri`, through
    /// the server's artifact proxy (`mlflow-artifacts:/…`, what `mlflow server` serves by default).
    pub fn upload_artifact(&self, artifact_uri: &str, name: &str, bytes: &[u8]) -> Result<(), MlflowError> {
        let Some(path) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(MlflowError::Refused {
                uri: self.uri.clone(),
                endpoint: "mlflow-artifacts".into(),
                status: 0,
                message: format!(
                    "the run's artifacts go to {artifact_uri}, which the server does not proxy (start it with --serve-artifacts)"
                ),
                code: None,
            });
        };
        // `mlflow-artifacts:/1/abc/artifacts` or `mlflow-artifacts://host/1/abc/artifacts`.
        let path = match path.strip_prefix("//") {
            Some(rest) => rest.split_once('/').map_or("", |(_, p)| p),
            None => path.trim_start_matches('/'),
        };
        let endpoint = format!("mlflow-artifacts/artifacts/{path}/{name}");
        let response = self
            .agent
            .put(&format!("{}/api/2.0/{endpoint}", self.uri))
            .header("Content-Type", "application/octet-stream")
            .send(bytes);
        self.answer(&endpoint, response).map(|_| ())
    }
}

fn id_of(value: &Value, endpoint: &str, client: &Client) -> Result<String, MlflowError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| MlflowError::Refused {
            uri: client.uri.clone(),
            endpoint: endpoint.to_owned(),
            status: 200,
            message: "the answer holds no id".into(),
            code: None,
        })
}
