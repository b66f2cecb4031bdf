/** Why an operator could not handle a record. */
export class EddyError extends Error {}

/** This record is bad: the pipeline's `on_error` policy (fail, skip, dead-letter) handles it. */
export class BadInput extends EddyError {
  constructor(message) {
    super(message);
    this.name = "BadInput";
  }
}

/** The operator cannot go on: the task fails whatever the policy. */
export class Fatal extends EddyError {
  constructor(message) {
    super(message);
    this.name = "Fatal";
  }
}
