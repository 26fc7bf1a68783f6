//! The script's hooks: the global functions of a config that rsp calls.
//! This list is the one place they are named: the config reads each by
//! its name, `rsp --check` reports them, the router calls them through
//! one function (`router::Router::call`), and the README's table of hooks
//! is checked against it. A new hook is a variant here and a call site.

/// One hook, in the order they run for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Route,
    Respond,
    Log,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Route, Hook::Respond, Hook::Log];

    /// Its place in `ALL` (and in any table kept per hook).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name of the global function.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::Route => "route",
            Hook::Respond => "respond",
            Hook::Log => "log",
        }
    }

    /// How it is called.
    pub const fn signature(self) -> &'static str {
        match self {
            Hook::Route => "route(req)",
            Hook::Respond => "respond(req, res)",
            Hook::Log => "log(req, res)",
        }
    }

    /// When rsp calls it, and what its answer does.
    pub const fn when(self) -> &'static str {
        match self {
            Hook::Route => {
                "each request head, before a server is chosen: returns a pool, \"ip:port\" or a reply table, and may rewrite the request (`route(conn)` for a tcp listener without a pool)"
            }
            Hook::Respond => {
                "each response head, before the client sees it: may change it, return \"retry\" or a reply table"
            }
            Hook::Log => "after the last byte of each exchange: its answer is ignored",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (index, hook) in Hook::ALL.iter().enumerate() {
            assert_eq!(hook.index(), index);
            assert!(hook.signature().starts_with(hook.name()));
        }
    }

    /// The README's table of hooks is this list: same hooks, same order,
    /// same words.
    #[test]
    fn the_readme_table_is_the_list() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("| Hook | Called |")
            .expect("README has a table of hooks");
        let rows: Vec<(String, String)> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
                assert_eq!(cells.len(), 2, "{line}");
                (
                    cells[0].trim().trim_matches('`').to_owned(),
                    cells[1].trim().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = Hook::ALL
            .iter()
            .map(|hook| (hook.signature().to_owned(), hook.when().to_owned()))
            .collect();
        assert_eq!(rows, expected, "README's table of hooks and Hook::ALL");
    }
}
