//! The lab plan: what building a lab produces, before any runtime runs it. Its nodes (each a
//! `Send` state machine, configured) and its links with their parameters; the sim instantiates
//! it today ([`Sim::from_plan`](crate::runtime::sim::Sim::from_plan)), a live runtime will serve
//! the same plan to kernel endpoints tomorrow.

use std::any::Any;

use rustc_hash::FxHashMap;
use vmcnet_topo::LinkSpec;

use crate::node::{Node, Port};
use crate::runtime::sim::{LinkId, NodeId};

/// Nodes and links, runtime-neutral.
#[derive(Default)]
pub struct LabPlan {
    pub nodes: Vec<Box<dyn Node>>,
    pub links: Vec<PlannedLink>,
    by_name: FxHashMap<String, NodeId>,
}

/// A link of the plan: named after the nodes it joins, between two node ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLink {
    pub name: String,
    pub a: (NodeId, Port),
    pub b: (NodeId, Port),
    pub spec: LinkSpec,
}

impl LabPlan {
    /// Add a node; its index is its id in any runtime that instantiates the plan.
    pub fn add_node(&mut self, node: Box<dyn Node>) -> NodeId {
        let id = self.nodes.len();
        self.by_name.insert(node.name().to_string(), id);
        self.nodes.push(node);
        id
    }

    /// Link two node ports; the index is the link's id in any runtime.
    pub fn connect(
        &mut self,
        name: &str,
        a: (NodeId, Port),
        b: (NodeId, Port),
        spec: LinkSpec,
    ) -> LinkId {
        self.links.push(PlannedLink {
            name: name.to_string(),
            a,
            b,
            spec,
        });
        self.links.len() - 1
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// A node as its concrete type, to configure it while the lab is built.
    pub fn get_mut<T: Node>(&mut self, id: NodeId) -> Option<&mut T> {
        let n: &mut dyn Any = self.nodes.get_mut(id)?.as_mut();
        n.downcast_mut()
    }
}
