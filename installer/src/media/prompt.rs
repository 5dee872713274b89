//! Questions on the console, for the guided install: a choice from a
//! numbered list, and a confirmation by a typed word. Over any reader and
//! writer, so that tests drive them with text.

use std::io::{BufRead, Write};

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("the console closed while the installer was asking: {0}")]
    Closed(String),
    #[error("writing to the console: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer to {0:?} after {TRIES} tries")]
    NoAnswer(String),
}

/// Wrong answers tolerated before giving up (a console that sends garbage
/// must not keep the installer asking forever).
const TRIES: usize = 5;

pub struct Prompt<'a> {
    input: &'a mut dyn BufRead,
    out: &'a mut dyn Write,
}

impl std::fmt::Debug for Prompt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prompt")
    }
}

impl<'a> Prompt<'a> {
    pub fn new(input: &'a mut dyn BufRead, out: &'a mut dyn Write) -> Prompt<'a> {
        Prompt { input, out }
    }

    /// Writes a line.
    pub fn say(&mut self, line: &str) -> Result<(), PromptError> {
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(())
    }

    fn ask(&mut self, question: &str) -> Result<String, PromptError> {
        write!(self.out, "{question} ")?;
        self.out.flush()?;
        let mut line = String::new();
        let n = self
            .input
            .read_line(&mut line)
            .map_err(|e| PromptError::Closed(e.to_string()))?;
        if n == 0 {
            return Err(PromptError::Closed(format!("no answer to {question:?}")));
        }
        Ok(line.trim().to_owned())
    }

    /// Shows `options` numbered from 1 and returns the index chosen, by
    /// number or by the option's first word (a disk's path, a profile's
    /// name).
    pub fn choose(&mut self, question: &str, options: &[String]) -> Result<usize, PromptError> {
        for (i, o) in options.iter().enumerate() {
            writeln!(self.out, "  {}) {o}", i + 1)?;
        }
        for _ in 0..TRIES {
            let answer = self.ask(&format!("{question} [1-{}]:", options.len()))?;
            if let Ok(n) = answer.parse::<usize>()
                && (1..=options.len()).contains(&n)
            {
                return Ok(n - 1);
            }
            if let Some(i) = options
                .iter()
                .position(|o| !answer.is_empty() && o.split_whitespace().next() == Some(&answer))
            {
                return Ok(i);
            }
            self.say(&format!(
                "  `{answer}` is none of them: type a number from 1 to {}",
                options.len()
            ))?;
        }
        Err(PromptError::NoAnswer(question.to_owned()))
    }

    /// Asks to type `word`; anything else is a no.
    pub fn confirm(&mut self, question: &str, word: &str) -> Result<bool, PromptError> {
        Ok(self.ask(&format!("{question} Type {word} to go on:"))? == word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Vec<String> {
        vec!["/dev/sda  8 GiB".into(), "/dev/vdb  16 GiB".into()]
    }

    #[test]
    fn choose_by_number_or_first_word_after_a_wrong_answer() {
        let mut input = std::io::Cursor::new("7\n/dev/vdb\n");
        let mut out = Vec::new();
        let i = Prompt::new(&mut input, &mut out)
            .choose("Target disk", &options())
            .unwrap();
        assert_eq!(i, 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("  1) /dev/sda  8 GiB\n"), "{text}");
        assert!(text.contains("`7` is none of them"), "{text}");
        let mut input = std::io::Cursor::new("1\n");
        let mut out = Vec::new();
        assert_eq!(
            Prompt::new(&mut input, &mut out)
                .choose("Target disk", &options())
                .unwrap(),
            0
        );
    }

    #[test]
    fn a_closed_console_or_endless_garbage_is_an_error() {
        let mut input = std::io::Cursor::new("");
        let mut out = Vec::new();
        assert!(matches!(
            Prompt::new(&mut input, &mut out).choose("Target disk", &options()),
            Err(PromptError::Closed(_))
        ));
        let mut input = std::io::Cursor::new("x\nx\nx\nx\nx\nx\n");
        let mut out = Vec::new();
        assert!(matches!(
            Prompt::new(&mut input, &mut out).choose("Target disk", &options()),
            Err(PromptError::NoAnswer(_))
        ));
    }

    #[test]
    fn confirm_needs_the_exact_word() {
        for (typed, want) in [("yes\n", true), ("y\n", false), ("YES\n", false)] {
            let mut input = std::io::Cursor::new(typed);
            let mut out = Vec::new();
            assert_eq!(
                Prompt::new(&mut input, &mut out)
                    .confirm("Install?", "yes")
                    .unwrap(),
                want
            );
        }
    }
}
