/**
 * Prints one plain closing line after jest's own summary, e.g. "253 passed, 0 failed",
 * so that any tool reading the end of the output sees the counts in a simple form.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const line = `${results.numPassedTests} passed, ${results.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : '');
    // At exit, so that it comes after jest's own summary.
    process.once('exit', () => process.stdout.write(`\n${line}\n`));
  }
}

module.exports = SummaryReporter;
