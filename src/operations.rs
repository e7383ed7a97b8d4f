//! The operations subcommands: `job list|runs|run`, `restore` and
//! `user export`. They call the same code as the scheduler in `serve`.

use anyhow::Context as _;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{Store, StoreOptions};

use jobs::schedule::format_ms;

use crate::config::Config;
use crate::open::{self, open_store};

#[derive(Subcommand)]
pub enum JobCommand {
    /// List the jobs with their schedules and last runs.
    List,
    /// Show recent runs, newest first.
    Runs {
        /// Only this job's runs.
        #[arg(long)]
        job: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Run a job now, as the scheduler would, and wait for it.
    Run { name: String },
}

/// The job context for runs recorded as `node`'s: the server's node name
/// in `serve`, `NODE/cli` for an operator's command. `objects` is the media
/// object store, driven by `runtime`: backups go there under `backups/`
/// (or to `jobs.backup_dir`, if set), and media objects are deleted there.
pub fn context(
    config: &Config,
    store: Store,
    node: &str,
    objects: Arc<dyn objects::ObjectStore>,
    runtime: tokio::runtime::Handle,
) -> jobs::Context {
    let media = Arc::new(jobs::objects::Objects::new(
        objects,
        runtime,
        config.data_dir.join("staging"),
    ));
    let target: Arc<dyn jobs::target::Target> = match &config.jobs.backup_dir {
        Some(dir) => Arc::new(jobs::target::LocalDir::new(dir)),
        None => media.clone(),
    };
    jobs::Context::new(store, node, config.jobs.settings(), target).with_media(media)
}

/// An operator command's job context, and the runtime that drives its
/// object store (keep it alive while the context is used).
fn cli_context(
    config: &Config,
    store: Store,
) -> anyhow::Result<(tokio::runtime::Runtime, jobs::Context)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let node = format!("{}/cli", config.node);
    let context = context(
        config,
        store,
        &node,
        open::media_objects(config)?,
        runtime.handle().clone(),
    );
    Ok((runtime, context))
}

pub fn job(config: &Config, command: JobCommand) -> anyhow::Result<()> {
    let store = open_store(config)?;
    match command {
        JobCommand::List => {
            let planned = jobs::scheduler::plan(&config.jobs.schedules, &config.jobs.timezone)?;
            println!(
                "job\tschedule ({})\tlast run\twhat it touches",
                config.jobs.timezone
            );
            for job in jobs::registry() {
                let schedule = planned
                    .iter()
                    .find(|p| p.job.name == job.name)
                    .map(|p| p.schedule.expr().to_owned())
                    .unwrap_or_else(|| jobs::scheduler::OFF.to_owned());
                let last = match store.job_runs(Some(job.name), 1)?.first() {
                    Some(run) => format!(
                        "{} at {} on {}",
                        run.status,
                        format_ms(run.started_at),
                        run.node
                    ),
                    None => "never".to_owned(),
                };
                println!("{}\t{schedule}\t{last}\t{}", job.name, job.summary);
            }
        }
        JobCommand::Runs { job, limit } => {
            println!("id\tjob\tslot\tnode\tstarted_at\tfinished_at\tstatus\tcounts\terror");
            for run in store.job_runs(job.as_deref(), limit)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    run.id,
                    run.job,
                    run.slot.map(format_ms).unwrap_or("-".into()),
                    run.node,
                    format_ms(run.started_at),
                    run.finished_at.map(format_ms).unwrap_or("-".into()),
                    run.status,
                    run.counts,
                    run.error.unwrap_or_default()
                );
            }
        }
        JobCommand::Run { name } => {
            let job = jobs::find(&name)?;
            let (_runtime, context) = cli_context(config, store)?;
            let started = std::time::Instant::now();
            let (run, counts) = jobs::runs::run_by_hand(&context, &job)?;
            println!(
                "job {name} run {run} ok in {:.2} s: {}",
                started.elapsed().as_secs_f64(),
                serde_json::to_string(&counts)?
            );
        }
    }
    Ok(())
}

/// `bluetick restore BACKUP`: `BACKUP` is an archive's path, or its key in
/// the backup directory (`backups/bluetick-….zip`).
pub fn restore(config: &Config, backup: &str) -> anyhow::Result<()> {
    // Not open_store: restore checks the database is empty before it
    // applies migrations itself, and bodies stay sealed as they are. The
    // message key authenticates the archive (its backup key is derived).
    let store = Store::open(&config.database_url(), &StoreOptions::default())
        .context("opening the database to restore into")?
        .with_sealer(open::message_key(config, false)?);
    let (_runtime, context) = cli_context(config, store.clone())?;
    let path = if Path::new(backup).is_file() {
        PathBuf::from(backup)
    } else {
        context.target.fetch(backup).with_context(|| {
            format!(
                "{backup} is neither a file nor a backup in {}",
                context.target.describe(backup)
            )
        })?
    };
    println!(
        "restoring {} into {}",
        path.display(),
        open::redacted(config)
    );
    let limits = config.jobs.restore_limits();
    jobs::restore::restore(&store, &path, &limits, &mut |line| println!("{line}"))?;
    store.close()?;
    Ok(())
}

/// `bluetick user export NAME`: writes NAME's data to a zip of JSON.
pub fn export_user(config: &Config, name: &str, output: Option<PathBuf>) -> anyhow::Result<()> {
    let user = protocol::UserName::parse(name)?;
    let store = open_store(config)?;
    let output = output.unwrap_or_else(|| PathBuf::from(format!("{user}-export.zip")));
    let counts = jobs::export::export_user(&store, user.as_str(), &output)
        .with_context(|| format!("exporting {user}"))?;
    println!("{}", output.display());
    eprintln!("exported {user}: {}", serde_json::to_string(&counts)?);
    Ok(())
}
