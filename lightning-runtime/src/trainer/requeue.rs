//! SLURM's auto-requeue (Lightning's `SLURMEnvironment(auto_requeue=True)`), for
//! `Trainer::builder().auto_requeue(true)`.

use std::process::Command;

/// The id `scontrol requeue` takes: `<array job>_<task>` in a job array, else
/// `SLURM_JOB_ID`; `None` outside SLURM.
fn job_id() -> Option<String> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(array), Some(task)) => Some(format!("{array}_{task}")),
        _ => var("SLURM_JOB_ID"),
    }
}

/// Runs `scontrol requeue <job id>` and says on stderr what happened. A failure is a
/// warning: the run's own error (the interruption) is what the caller reports.
pub(crate) fn requeue_slurm_job() {
    let Some(id) = job_id() else {
        eprintln!("warning: auto_requeue: SLURM_JOB_ID is not set (not a SLURM job), so nothing was requeued");
        return;
    };
    match Command::new("scontrol").args(["requeue", &id]).status() {
        Ok(s) if s.success() => eprintln!("requeued SLURM job {id} (`scontrol requeue {id}`)"),
        Ok(s) => eprintln!("warning: `scontrol requeue {id}` failed ({s}): the job was not requeued"),
        Err(e) => eprintln!("warning: could not run `scontrol requeue {id}` ({e}): the job was not requeued"),
    }
}
