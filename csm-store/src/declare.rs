//! The macros that declare the tables (used in `tables.rs`): [`table!`](crate::table)
//! makes a row type from its columns, [`catalog!`](crate::catalog) lists every table
//! once. They only expand to code that names the store's types by `$crate` paths, so this
//! module imports nothing.

/// Declares a table's row once: each line is a field, its column name if it differs
/// (`as "ts"`), its Rust type and its [`Kind`](crate::column::Kind). From it come the
/// row struct, a struct of column-name constants (`CpuRow::COLUMN.cpu_pct`), the
/// [`Row`](crate::Row) implementation (schema, batch for the writer; the kinds give the encodings)
/// and the [`FromBatch`](crate::FromBatch) reader. Every row has a `ts_us` field.
#[macro_export]
macro_rules! table {
    (
        $(#[$meta:meta])*
        pub struct $row:ident in $table:ident, names $names:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident $(as $name:literal)?: $ty:ty = $kind:ident,
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $row {
            $( $(#[$field_meta])* pub $field: $ty, )+
        }

        #[doc = concat!("Column names of `", stringify!($row), "`, for readers that project columns.")]
        #[derive(Clone, Copy, Debug)]
        pub struct $names {
            $( pub $field: &'static str, )+
        }

        impl $row {
            /// The column names, one per field.
            pub const COLUMN: $names = $names {
                $( $field: $crate::column_name!($field $($name)?), )+
            };
        }

        impl $crate::Row for $row {
            const TABLE: $crate::Table = $crate::Table::$table;

            fn columns() -> Vec<$crate::column::Column> {
                vec![$(
                    $crate::column::Column::new::<$ty>(
                        $crate::column_name!($field $($name)?),
                        $crate::column::Kind::$kind,
                    ),
                )+]
            }

            fn ts_us(&self) -> i64 {
                self.ts_us
            }

            fn to_batch(
                rows: &[Self],
            ) -> Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError> {
                arrow::record_batch::RecordBatch::try_new(
                    $crate::Table::$table.schema(),
                    vec![$(
                        <$ty as $crate::column::Value>::to_array(
                            rows.iter().map(|r| &r.$field),
                            $crate::column::Kind::$kind,
                        ),
                    )+],
                )
            }
        }

        impl $crate::FromBatch for $row {
            fn from_projected_batch(
                batch: &arrow::record_batch::RecordBatch,
                wanted: Option<&[&str]>,
            ) -> Result<Vec<Self>, arrow::error::ArrowError> {
                $(
                    let mut $field = $crate::column::read_wanted_column::<$ty>(
                        batch,
                        $crate::column_name!($field $($name)?),
                        $crate::column::Kind::$kind,
                        wanted,
                    )?
                    .into_iter();
                )+
                Ok((0..batch.num_rows())
                    .map(|_| $row {
                        $( $field: $field.next().unwrap_or_default(), )+
                    })
                    .collect())
            }
        }
    };
}

/// The name of a column: the field's own, or the one given with `as "name"`.
#[doc(hidden)]
#[macro_export]
macro_rules! column_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $name:literal) => {
        $name
    };
}

/// Declares the list of tables, once (the invocation is at the end of `tables.rs`,
/// under the row declarations): the [`Table`](crate::Table) enum, its folder names, the written and
/// roll-up lists, the columns of each, and [`Table::visit_written`](crate::Table::visit_written), which hands every
/// written table's row type to the store so that `Store::open` needs no list of its own.
///
/// Each line: variant, folder name, row type, and how the daemon writes it:
/// `rolled_up` (raw rows, rolled up into a minute table), `plain` (raw rows, no
/// roll-up) or `rollup` (a minute table, written from another's rows).
#[macro_export]
macro_rules! catalog {
    ($( $variant:ident = $name:literal => $row:ident, $how:ident; )+) => {
        /// The tables csm writes; the name is the top folder under the data dir.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Table {
            $( $variant, )+
        }

        impl Table {
            /// Every table, in declaration order.
            pub const EVERY: &'static [Table] = &[$( Table::$variant ),+];

            pub fn name(self) -> &'static str {
                match self {
                    $( Table::$variant => $name, )+
                }
            }

            /// The columns, as the table's row declaration gives them.
            pub fn columns(self) -> Vec<$crate::column::Column> {
                match self {
                    $( Table::$variant => <$row as $crate::Row>::columns(), )+
                }
            }

            /// How the daemon writes the table.
            pub fn writing(self) -> $crate::table::Writing {
                match self {
                    $( Table::$variant => $crate::catalog!(@writing $how), )+
                }
            }

            /// Hands the row type of every table the daemon writes as it collects to
            /// `visitor`, in declaration order.
            pub fn visit_written(visitor: &mut impl $crate::rollup::WrittenTables) {
                $( $crate::catalog!(@visit visitor $row $how); )+
            }
        }
    };
    (@writing rolled_up) => { $crate::table::Writing::RolledUp };
    (@writing plain) => { $crate::table::Writing::Plain };
    (@writing rollup) => { $crate::table::Writing::Rollup };
    (@visit $visitor:ident $row:ident rolled_up) => { $visitor.rolled_up::<$row>() };
    (@visit $visitor:ident $row:ident plain) => { $visitor.plain::<$row>() };
    (@visit $visitor:ident $row:ident rollup) => {};
}
